// Verifies a webhook credport delivered with Nango's Node SDK and prints one JSON document:
// {"hmac": verifyIncomingWebhookRequest's answer, "legacy": verifyWebhookSignature's}. Run by
// compat_test.go in cmd/credport.
//
// Standard input: {"body": the exact body received, "headers": {name: value}, "key": the
// environment's webhook signing key}.
import { Nango } from '@nangohq/node';

let input = '';
for await (const chunk of process.stdin) {
    input += chunk;
}
const { body, headers, key } = JSON.parse(input);
const nango = new Nango({ secretKey: 'unused-api-key', webhookSigningKey: key });
const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
console.log(
    JSON.stringify({
        hmac: nango.verifyIncomingWebhookRequest(body, headers),
        legacy: nango.verifyWebhookSignature(lower['x-nango-signature'], JSON.parse(body)),
        wrongKey: new Nango({ secretKey: 'unused-api-key', webhookSigningKey: key + 'x' }).verifyIncomingWebhookRequest(body, headers),
    }),
);
