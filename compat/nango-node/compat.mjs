// Drives a credport server with Nango's Node SDK and prints one JSON document: for every call its
// result, or {"error":{"status","data"}} when the SDK threw. The Go test (cmd/credport/compat_test.go)
// imports the connections this script expects and checks each result.
//
// Environment: NANGO_HOST (the server's base URL), NANGO_SECRET_KEY (a key with every scope),
// NANGO_READ_KEY (a key with environment:connections:read and :list only). The integrations gh
// (github), tw (twitter) and openai (openai) exist; the last calls create, change and delete more.
import { Nango } from '@nangohq/node';

const host = process.env.NANGO_HOST;
const secretKey = process.env.NANGO_SECRET_KEY;
const readKey = process.env.NANGO_READ_KEY;
if (!host || !secretKey || !readKey) {
    console.error('NANGO_HOST, NANGO_SECRET_KEY and NANGO_READ_KEY are required');
    process.exit(2);
}

const nango = new Nango({ secretKey, host });
const reader = new Nango({ secretKey: readKey, host });

const results = {};

// axios responses are reduced to what a caller looks at.
const plain = (r) => (r && typeof r === 'object' && 'status' in r && 'data' in r && 'headers' in r ? { status: r.status, data: r.data } : r);

async function call(name, fn) {
    try {
        const value = plain(await fn());
        results[name] = value === undefined ? { undefined: true } : value;
    } catch (err) {
        if (err && err.response) {
            results[name] = { error: { status: err.response.status, data: err.response.data } };
        } else {
            results[name] = { error: { message: String(err && err.message ? err.message : err) } };
        }
    }
}

const ids = (r) => (r && Array.isArray(r.connections) ? r.connections.map((c) => `${c.provider_config_key}/${c.connection_id}`) : r);

// Reads.
await call('getConnection', () => nango.getConnection('gh', 'user-1'));
await call('getConnectionWithRefreshToken', () => nango.getConnection('gh', 'user-1', false, true));
await call('getConnectionOAuth1', () => nango.getConnection('tw', 'user-1'));
await call('getTokenOAuth2', () => nango.getToken('gh', 'user-1'));
await call('getTokenOAuth1', () => nango.getToken('tw', 'user-1'));
await call('getTokenApiKey', () => nango.getToken('openai', 'acme'));
await call('getRawTokenResponse', () => nango.getRawTokenResponse('gh', 'user-1'));
await call('getConnectionUnknownConnection', () => nango.getConnection('gh', 'nobody'));
await call('getConnectionUnknownIntegration', () => nango.getConnection('nope', 'user-1'));
await call('getConnectionForceRefresh', () => nango.getConnection('gh', 'user-1', true));

// A key without read_credentials.
await call('readerGetConnection', () => reader.getConnection('gh', 'user-1'));
await call('readerGetToken', () => reader.getToken('gh', 'user-1'));
await call('readerRefreshToken', () => reader.getConnection('gh', 'user-1', false, true));
await call('readerList', async () => (await reader.listConnections({ connectionId: 'user-1' })).connections);
await call('readerSetMetadata', () => reader.setMetadata('gh', 'user-1', { x: 1 }));

// Metadata.
await call('getMetadata', () => nango.getMetadata('gh', 'user-1'));
await call('setMetadata', () => nango.setMetadata('gh', 'user-1', { a: 1, nested: { k: 'v' } }));
await call('getMetadataAfterSet', () => nango.getMetadata('gh', 'user-1'));
await call('updateMetadata', () => nango.updateMetadata('gh', ['user-1', 'user-2'], { b: 2 }));
await call('getMetadataAfterUpdate', () => nango.getMetadata('gh', 'user-1'));
await call('getMetadataAfterUpdateOther', () => nango.getMetadata('gh', 'user-2'));
await call('setMetadataClear', () => nango.setMetadata('gh', 'user-2', {}));
await call('getMetadataAfterClear', () => nango.getMetadata('gh', 'user-2'));
await call('setMetadataUnknown', () => nango.setMetadata('gh', 'nobody', { a: 1 }));
await call('updateMetadataPartlyUnknown', () => nango.updateMetadata('gh', ['user-1', 'nobody'], { c: 3 }));
await call('getMetadataAfterRefused', () => nango.getMetadata('gh', 'user-1'));

// Lists.
await call('listAll', async () => ids(await nango.listConnections()));
await call('listAllRaw', () => nango.listConnections({}));
await call('listConnectionId', async () => ids(await nango.listConnections({ connectionId: 'user-1' })));
await call('listIntegrationId', async () => ids(await nango.listConnections({ integrationId: 'gh' })));
await call('listIntegrationIds', async () => ids(await nango.listConnections({ integrationId: ['tw', 'openai'] })));
await call('listTags', async () => ids(await nango.listConnections({ tags: { Team: 'billing' } })));
await call('listTagsTwo', async () => ids(await nango.listConnections({ tags: { team: 'billing', region: 'eu' } })));
await call('listTagEmail', async () => ids(await nango.listConnections({ tags: { email: 'ada@example.com' } })));
await call('listTagDisplayName', async () => ids(await nango.listConnections({ tags: { displayName: 'Ada' } })));
await call('listUserId', async () => ids(await nango.listConnections({ userId: 'eu-1' })));
await call('listCombined', async () => ids(await nango.listConnections({ connectionId: 'user-1', integrationId: 'tw' })));
await call('listNone', async () => ids(await nango.listConnections({ connectionId: 'nobody' })));
await call('listPage0', async () => ids(await nango.listConnections({ limit: 2 })));
await call('listPage1', async () => ids(await nango.listConnections({ limit: 2, page: 1 })));
await call('listPage2', async () => ids(await nango.listConnections({ limit: 2, page: 2 })));
await call('listPage3', async () => ids(await nango.listConnections({ limit: 2, page: 3 })));
await call('listLegacyConnectionId', async () => ids(await nango.listConnections('user-1')));
await call('listLegacySearch', async () => ids(await nango.listConnections(undefined, 'ACM')));
await call('listLegacyEndUser', async () => ids(await nango.listConnections(undefined, undefined, { endUserId: 'eu-1' })));
await call('listLegacyPaging', async () => ids(await nango.listConnections(undefined, undefined, { limit: 3, page: 1 })));

// Patch.
await call('patchConnection', () => nango.patchConnection({ connectionId: 'user-2', provider_config_key: 'gh' }, { tags: { tier: 'gold' } }));
await call('getConnectionAfterPatch', async () => (await nango.getConnection('gh', 'user-2')).tags);
await call('listAfterPatch', async () => ids(await nango.listConnections({ tags: { tier: 'gold' } })));
await call('patchConnectionEndUser', () =>
    nango.patchConnection({ connectionId: 'user-2', provider_config_key: 'gh' }, { end_user: { id: 'eu-2', email: 'bob@example.com', display_name: 'Bob' } })
);
await call('getConnectionAfterEndUserPatch', async () => {
    const c = await nango.getConnection('gh', 'user-2');
    return { tags: c.tags, end_user: c.end_user };
});
await call('listAfterEndUserPatch', async () => ids(await nango.listConnections({ userId: 'eu-2' })));
await call('patchConnectionEmpty', () => nango.patchConnection({ connectionId: 'user-2', provider_config_key: 'gh' }, {}));
await call('patchConnectionUnknown', () => nango.patchConnection({ connectionId: 'nobody', provider_config_key: 'gh' }, { tags: { a: 'b' } }));
await call('patchConnectionBadBody', () => nango.patchConnection({ connectionId: 'user-2', provider_config_key: 'gh' }, { metadata: { a: 1 } }));

// Delete.
await call('deleteConnection', () => nango.deleteConnection('gh', 'user-3'));
await call('getConnectionAfterDelete', () => nango.getConnection('gh', 'user-3'));
await call('getTokenAfterDelete', () => nango.getToken('gh', 'user-3'));
await call('deleteConnectionAgain', () => nango.deleteConnection('gh', 'user-3'));
await call('listAfterDelete', async () => ids(await nango.listConnections({ integrationId: 'gh' })));

// Integrations: created, read, updated and deleted through the SDK's five calls.
const linear = {
    provider: 'linear',
    unique_key: 'lin',
    display_name: 'Linear Prod',
    credentials: { type: 'OAUTH2', client_id: 'lin-client', client_secret: 'lin-secret-1', scopes: 'read,write' }
};
await call('listIntegrations', () => nango.listIntegrations());
await call('createIntegration', () => nango.createIntegration(linear));
await call('createIntegrationDuplicate', () => nango.createIntegration(linear));
await call('createIntegrationUnknownProvider', () => nango.createIntegration({ provider: 'nope', unique_key: 'nope' }));
await call('createIntegrationMissingCredentials', () => nango.createIntegration({ provider: 'linear', unique_key: 'lin2' }));
await call('getIntegration', () => nango.getIntegration({ uniqueKey: 'lin' }));
await call('getIntegrationCredentials', () => nango.getIntegration({ uniqueKey: 'lin' }, { include: ['credentials'] }));
// The SDK sends only the last element of include.
await call('getIntegrationIncludeLast', () => nango.getIntegration({ uniqueKey: 'lin' }, { include: ['credentials', 'webhook'] }));
await call('getIntegrationUnknown', () => nango.getIntegration({ uniqueKey: 'nope' }));
await call('readerGetIntegration', () => reader.getIntegration({ uniqueKey: 'lin' }));
await call('updateIntegration', () =>
    nango.updateIntegration({ uniqueKey: 'lin' }, { display_name: 'Linear', credentials: { type: 'OAUTH2', client_id: 'lin-client-2', client_secret: 'lin-secret-2' } })
);
await call('getIntegrationAfterUpdate', () => nango.getIntegration({ uniqueKey: 'lin' }, { include: ['credentials'] }));
await call('updateIntegrationRenameWithConnections', () => nango.updateIntegration({ uniqueKey: 'gh' }, { unique_key: 'gh2' }));
await call('updateIntegrationWrongType', () => nango.updateIntegration({ uniqueKey: 'lin' }, { credentials: { type: 'OAUTH1', client_id: 'a', client_secret: 'b' } }));
await call('updateIntegrationUnknown', () => nango.updateIntegration({ uniqueKey: 'nope' }, { display_name: 'x' }));
await call('listIntegrationsAfterUpdate', () => nango.listIntegrations());
await call('deleteIntegration', () => nango.deleteIntegration('gh'));
await call('getIntegrationAfterDelete', () => nango.getIntegration({ uniqueKey: 'gh' }));
await call('getConnectionAfterIntegrationDelete', () => nango.getConnection('gh', 'user-1'));
await call('listAfterIntegrationDelete', async () => ids(await nango.listConnections()));
await call('deleteIntegrationAgain', () => nango.deleteIntegration('gh'));

process.stdout.write(JSON.stringify(results) + '\n');
