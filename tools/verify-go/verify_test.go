package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
)

func canonOf(t *testing.T, text string) string {
	t.Helper()
	v, perr := ParseStrict([]byte(text))
	if perr != nil {
		t.Fatalf("parse %s: %v", text, perr)
	}
	out, err := Canonical(v)
	if err != nil {
		t.Fatalf("canonical %s: %v", text, err)
	}
	return string(out)
}

func sha(b string) string {
	s := sha256.Sum256([]byte(b))
	return hex.EncodeToString(s[:])
}

// The worked examples of spec section 5.
func TestWorkedExamples(t *testing.T) {
	got := canonOf(t, `{"b": 1, "a": "é", "c": [true, null]}`)
	if got != `{"a":"\u00e9","b":1,"c":[true,null]}` || len(got) != 36 || sha(got) != "bb6960162ef0bb52ed3fdf181fa81648fd36afa76dfa1dd33748eb9f1461bce6" {
		t.Errorf("example 1: %s", got)
	}
	got = canonOf(t, `{"\uff61": 1, "\ud83d\ude00": 2, "Z": 3, "a": 4}`)
	if got != `{"Z":3,"a":4,"\uff61":1,"\ud83d\ude00":2}` || len(got) != 41 {
		t.Errorf("example 2: %s", got)
	}
	// The same keys written raw (UTF-8) sort the same way.
	if got2 := canonOf(t, "{\"\uff61\": 1, \"\U0001F600\": 2, \"Z\": 3, \"a\": 4}"); got2 != got {
		t.Errorf("example 2 raw: %s", got2)
	}
	in3 := "{\"s\": \"tab\t nl\\n bell\\u0007 del\u007f ls\u2028 q\\\" bs\\\\ nul\\u0000 e\u00e9 emoji\U0001F6AB\", " +
		`"n": [1, -0, 0.5, 0.6666666666666666, 9007199254740991, 1000000000000000, 0.0001]}`
	in3 = strings.Replace(in3, "\t", `\t`, 1) // a raw TAB is not allowed inside a JSON string
	want3 := `{"n":[1,0,0.5,0.6666666666666666,9007199254740991,1000000000000000,0.0001],"s":"tab\t nl\n bell\u0007 del\u007f ls\u2028 q\" bs\\ nul\u0000 e\u00e9 emoji\ud83d\udeab"}`
	if got = canonOf(t, in3); got != want3 {
		t.Errorf("example 3:\n got %s\nwant %s", got, want3)
	}
	got = canonOf(t, `{"agent_id": "spiffe://example.org/ns/prod/sa/scraper", "epoch": 1, "action": "block"}`)
	if len(got) != 81 || sha(got) != "7a7415216c2f94c395fc9d0e37d91d07e0046c5072adadeaf30eddeeaf4d6da7" {
		t.Errorf("example 4: %s", got)
	}
	if kid := Thumbprint("YyTpsO2qC3D-jfZpcDzLx_7W5mV1c22XyEduWvBAz3Y"); kid != "zlfYnj_YD5nkz0Outb-zElQWc9-4uNlfQIF3NLXWHjk" {
		t.Errorf("thumbprint %s", kid)
	}
}

func TestNumbers(t *testing.T) {
	for in, want := range map[string]string{"1.0": "1", "1e2": "100", "-0.0": "0", "0.1": "0.1", "1E-4": "0.0001",
		"123456789012345.5": "123456789012345.5", "-2.5": "-2.5", "9007199254740991": "9007199254740991"} {
		if got := canonOf(t, in); got != want {
			t.Errorf("%s -> %s, want %s", in, got, want)
		}
	}
	for _, in := range []string{"9007199254740992", "0.00001", "1e400", "-1e300"} {
		v, _ := ParseStrict([]byte(in))
		if _, err := Canonical(v); err == nil {
			t.Errorf("%s has no canonical form, but was written", in)
		}
	}
}

func TestStrict(t *testing.T) {
	cases := map[string]string{
		`{"a":1,"a":2}`:               "duplicate_key",
		`{"a":1,"\u0061":2}`:          "duplicate_key",
		`{"x":{"b":[{"c":1,"c":1}]}}`: "duplicate_key",
		`{"a":1,}`:                    "invalid_json",
		`{"a":01}`:                    "invalid_json",
		"{\"a\":\"\x01\"}":            "invalid_json",
		"\xff":                        "invalid_json",
		strings.Repeat("[", 65) + strings.Repeat("]", 65): "too_deep",
	}
	for in, code := range cases {
		if _, perr := ParseStrict([]byte(in)); perr == nil || perr.Code != code {
			t.Errorf("%q: %v, want %s", in, perr, code)
		}
	}
	for _, in := range []string{strings.Repeat("[", 64) + strings.Repeat("]", 64), `{"a":1,"b":{"a":2}}`, `{"\ud800":1,"\ufffd":2}`} {
		if _, perr := ParseStrict([]byte(in)); perr != nil {
			t.Errorf("%q: %v", in, perr)
		}
	}
}

func TestSpiffe(t *testing.T) {
	for id, ok := range map[string]bool{
		"spiffe://example.org/ns/prod/sa/Scraper-Agent_2": true, "spiffe://example.org": true, "spiffe://example.org/a/...": true,
		"Spiffe://example.org/a": false, "spiffe://EXAMPLE.org/a": false, "spiffe://example.org/a/": false,
		"spiffe://example.org/a//b": false, "spiffe://example.org/a/../b": false, "spiffe://example.org/a%2Fb": false,
		"spiffe://example.org:8443/a": false, "spiffe://u@example.org/a": false, "spiffe://example.org/a?x=1": false,
		"spiffe://example.org/a#x": false, "spiffe://": false, "spiffe://example.org/.": false,
	} {
		if (SpiffeProblem(id) == "") != ok {
			t.Errorf("%s: %q", id, SpiffeProblem(id))
		}
	}
}

// The test vectors: every document's canonical form without signature is the
// matching line of canonical.ndjson, and the addenda verify with the tips the
// regulators' guide gives.
func TestVectors(t *testing.T) {
	docs, err1 := os.ReadFile("../../test/vectors/documents.ndjson")
	canon, err2 := os.ReadFile("../../test/vectors/canonical.ndjson")
	jwks, err3 := os.ReadFile("../../test/vectors/jwks.json")
	if err1 != nil || err2 != nil || err3 != nil {
		t.Skip("test vectors not found")
	}
	dl, cl := SplitLines(docs), SplitLines(canon)
	if len(dl) != len(cl) {
		t.Fatalf("%d documents, %d canonical lines", len(dl), len(cl))
	}
	var addenda [][]byte
	for i := range dl {
		v, perr := ParseStrict(dl[i])
		if perr != nil {
			t.Fatal(perr)
		}
		whole, _ := Canonical(v)
		if !bytes.Equal(whole, dl[i]) {
			t.Errorf("line %d is not canonical", i+1)
		}
		signed, _ := Canonical(v.Without("signature"))
		if !bytes.Equal(signed, cl[i]) {
			t.Errorf("line %d:\n got %s\nwant %s", i+1, signed, cl[i])
		}
		if s, _ := str(v.Get("type")); s == "killswitch.trace-addendum/v1" {
			addenda = append(addenda, dl[i])
		}
	}
	trusted, err := LoadJWKS(jwks)
	if err != nil {
		t.Fatal(err)
	}
	results, tips := Verify(bytes.Join(addenda, []byte("\n")), trusted)
	for _, r := range results {
		if len(r.Findings) > 0 {
			t.Errorf("line %d: %v", r.Line, r.Findings)
		}
	}
	if len(tips) != 2 || !strings.HasPrefix(tips[0].Hash, "sha256:641900f5") || tips[0].Seq != 3 ||
		!strings.HasPrefix(tips[1].Hash, "sha256:23ee6c4d") || tips[1].Seq != 1 {
		t.Errorf("tips %+v", tips)
	}
	// Section 4's example: the digest of the first addendum is the prev_hash of the next.
	if d := Digest(dl[1]); d != "sha256:7a9b22980418ccaef410405ee691d72206188e53e5ed233b6fb2e1e468e1bdcc" {
		t.Errorf("digest %s", d)
	}
}

func TestRFC3339(t *testing.T) {
	base := int64(1795424400000) // 2026-11-23T09:00:00Z
	for s, want := range map[string]int64{
		"2026-11-23T09:00:00.000Z":    base,
		"2026-11-23t09:00:00z":        base,
		"2026-11-23T09:00:00.123999Z": base + 123,
		"2026-11-23T10:30:00+01:30":   base,
		"2026-11-23T08:59:59.5-00:00": base - 500,
		"2026-11-23T08:59:60.5Z":      base - 1,
		"1969-12-31T23:59:59.9999Z":   -1,
		"2024-02-29T00:00:00Z":        1709164800000,
	} {
		got, why := ParseRFC3339(s)
		if why != "" || got != want {
			t.Errorf("%s: %d %q, want %d", s, got, why, want)
		}
	}
	for _, s := range []string{"2026-11-23 09:00:00Z", "2026-11-23T09:00:00", "2025-02-29T00:00:00Z", "2026-11-23T24:00:00Z",
		"2026-11-23T09:00:61Z", "2026-11-23T09:00:00+24:00", "2026-11-23T09:00:00.Z", "2026-13-01T00:00:00Z"} {
		if _, why := ParseRFC3339(s); why == "" {
			t.Errorf("%s accepted", s)
		}
	}
}

// A well-formed, unsigned operator addendum of stream "s".
func opAddendum(seq int, prev string) string {
	return fmt.Sprintf(`{"agent_id":"spiffe://example.org/a","chain":{"prev_hash":%q,"sequence_number":%d,"stream":"s"},`+
		`"gateway":{"kill_switch":{"deny_rate_threshold":0.9,"enabled":true,"min_calls":10,"trigger":"operator","window_seconds":300},"kill_switch_triggered":false},`+
		`"issued_at":"2026-11-23T09:00:00.000Z","kill_event_id":"sha256:%064d","session_ids":[],"type":"killswitch.trace-addendum/v1"}`, prev, seq, seq)
}

func chainCodes(t *testing.T, lines ...string) map[int][]string {
	t.Helper()
	results, _ := Verify([]byte(strings.Join(lines, "\n")), map[string]TrustedKey{})
	out := map[int][]string{}
	for _, r := range results {
		for _, f := range r.Findings {
			if f.Code != "unsigned" {
				out[r.Line] = append(out[r.Line], f.Code)
			}
		}
	}
	return out
}

func TestChain(t *testing.T) {
	a1 := opAddendum(1, "genesis")
	a2 := opAddendum(2, Digest([]byte(a1)))
	a3 := opAddendum(3, Digest([]byte(a2)))
	a3bad := opAddendum(3, "sha256:"+strings.Repeat("0", 64))
	a2fork := strings.Replace(a2, `"spiffe://example.org/a"`, `"spiffe://example.org/b"`, 1)
	for name, c := range map[string]struct {
		lines []string
		want  map[int][]string
	}{
		"clean":        {[]string{a1, "", a2, a3}, map[int][]string{}},
		"head missing": {[]string{a2, a3}, map[int][]string{1: {"chain_head_missing"}}},
		"gap":          {[]string{a1, a3}, map[int][]string{2: {"chain_gap"}}},
		"reordered":    {[]string{a1, a3, a2}, map[int][]string{2: {"chain_gap"}, 3: {"chain_reordered"}}},
		"reordered, late predecessor does not link": {[]string{a1, a3bad, a2}, map[int][]string{2: {"chain_gap", "chain_prev_hash_mismatch"}, 3: {"chain_reordered"}}},
		"duplicate":   {[]string{a1, a2, a2, a3}, map[int][]string{3: {"chain_duplicate"}}},
		"fork":        {[]string{a1, a2, a2fork, a3}, map[int][]string{3: {"chain_fork"}}},
		"mismatch":    {[]string{a1, a2, a3bad}, map[int][]string{3: {"chain_prev_hash_mismatch"}}},
		"not genesis": {[]string{opAddendum(1, Digest([]byte(a1)))}, map[int][]string{1: {"chain_prev_hash_mismatch"}}},
		"excluded line leaves a gap": {[]string{a1, strings.Replace(a2, `{"agent_id"`, `{"agent_id":1,"agent_id"`, 1), a3},
			map[int][]string{2: {"duplicate_key"}, 3: {"chain_gap"}}},
	} {
		got := chainCodes(t, c.lines...)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
}

func TestRelations(t *testing.T) {
	docs, err := os.ReadFile("../../test/vectors/documents.ndjson")
	if err != nil {
		t.Skip("test vectors not found")
	}
	line := string(SplitLines(docs)[1]) // an automatic block: 2 denies of 3 calls
	for _, edit := range [][2]string{
		{`"deny_rate":0.6666666666666666`, `"deny_rate":0.7`},
		{`"calls":3`, `"calls":2`},
		{`"window_start":"2026-11-23T08:55:49.000Z"`, `"window_start":"2026-11-23T08:55:50.000Z"`},
		{`"file":"decisions/2026-11-23.ndjson"`, `"file":"other.ndjson"`},
		{`"trigger":"deny_rate"`, `"trigger":"operator"`},
	} {
		v, perr := ParseStrict([]byte(strings.Replace(line, edit[0], edit[1], 1)))
		if perr != nil {
			t.Fatal(perr)
		}
		if _, problems, relations := CheckSchema(v); len(problems) != 0 || len(relations) == 0 {
			t.Errorf("%s: problems %v, relations %v", edit[1], problems, relations)
		}
	}
}

func TestJWKS(t *testing.T) {
	const x = "YyTpsO2qC3D-jfZpcDzLx_7W5mV1c22XyEduWvBAz3Y"
	key := func(extra string) string {
		return `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `"` + extra + `}]}`
	}
	for _, ok := range []string{key(""), key(`,"kid":"zlfYnj_YD5nkz0Outb-zElQWc9-4uNlfQIF3NLXWHjk","alg":"EdDSA","use":"sig"`), key(`,"key_ops":["verify"]`), `{"keys":[]}`} {
		if _, err := LoadJWKS([]byte(ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{key(`,"d":"` + x + `"`), key(`,"kid":"abc"`), key(`,"alg":"RS256"`), key(`,"use":"enc"`), key(`,"x":"` + x + `"`),
		`{"keys":[{"kty":"OKP","crv":"X25519","x":"` + x + `"}]}`, `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `="}]}`, `{"keys":{}}`, `[]`} {
		if _, err := LoadJWKS([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
