package server

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/credport/credport/gen"
)

// endUserTagKeys are the tags an end user yields, beside its own tags.
const (
	tagEndUserID          = "end_user_id"
	tagEndUserEmail       = "end_user_email"
	tagEndUserDisplayName = "end_user_display_name"
)

// mergeTags derives a connection's tags from a request: the end user's tags (its id, email,
// display name and own tags), overridden by the request's tags. Keys are lower-cased; two keys
// that become equal are an error.
func mergeTags(tags *gen.Tags, endUser *gen.EndUserInput) (map[string]string, []gen.ErrorDetail) {
	merged := map[string]string{}
	var errs []gen.ErrorDetail
	if endUser != nil {
		merged[tagEndUserID] = endUser.Id
		if endUser.Email != nil && *endUser.Email != "" {
			merged[tagEndUserEmail] = string(*endUser.Email)
		}
		if endUser.DisplayName != nil && *endUser.DisplayName != "" {
			merged[tagEndUserDisplayName] = *endUser.DisplayName
		}
		if endUser.Tags != nil {
			own, dup := lowerKeys(*endUser.Tags, []string{"end_user", "tags"})
			errs = append(errs, dup...)
			maps.Copy(merged, own)
		}
	}
	if tags != nil {
		explicit, dup := lowerKeys(tagsMap(*tags), []string{"tags"})
		errs = append(errs, dup...)
		maps.Copy(merged, explicit)
	}
	return merged, errs
}

// tagsMap is the generated Tags type as a plain map.
func tagsMap(t gen.Tags) map[string]string {
	m := make(map[string]string, len(t.AdditionalProperties)+1)
	maps.Copy(m, t.AdditionalProperties)
	if t.EndUserEmail != nil {
		m[tagEndUserEmail] = string(*t.EndUserEmail)
	}
	return m
}

func lowerKeys(in map[string]string, at []string) (map[string]string, []gen.ErrorDetail) {
	out := make(map[string]string, len(in))
	origin := make(map[string]string, len(in))
	var errs []gen.ErrorDetail
	for _, k := range slices.Sorted(maps.Keys(in)) {
		lk := strings.ToLower(k)
		if first, dup := origin[lk]; dup {
			errs = append(errs, detail("invalid_key",
				fmt.Sprintf("Tag keys %q and %q are the same once lower-cased", first, k), append(append([]string{}, at...), k)))
			continue
		}
		origin[lk] = k
		out[lk] = in[k]
	}
	return out, errs
}
