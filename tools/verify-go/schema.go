package main

// The addendum shape (spec section 4, with the evidence of section 3, the
// SPIFFE ID grammar of section 1 and the document time form of the
// conventions). Every problem is one finding (code schema_invalid).

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
)

type checker struct {
	problems  []string
	relations []string // consistency between fields (not structure)
}

func (c *checker) rel(format string, args ...any) {
	c.relations = append(c.relations, fmt.Sprintf(format, args...))
}

func (c *checker) bad(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// members checks that obj is an object with exactly the allowed members and
// every required one. It returns false when obj is not an object.
func (c *checker) members(path string, obj *Value, required, optional []string) bool {
	if obj == nil {
		return false
	}
	if obj.Kind != KObject {
		c.bad("%s is a %s, not an object", path, obj.Kind)
		return false
	}
	allowed := map[string]bool{}
	for _, k := range required {
		allowed[k] = true
		if !obj.Has(k) {
			c.bad("%s has no member %q", path, k)
		}
	}
	for _, k := range optional {
		allowed[k] = true
	}
	for _, m := range obj.Obj {
		if !allowed[string(m.Key)] || !isScalarString(m.Key) {
			c.bad("%s has a member %s that is not allowed", path, canonString(m.Key))
		}
	}
	return true
}

// isScalarString is false for a key holding a lone surrogate (string(m.Key)
// would turn it into U+FFFD and could then match an allowed name).
func isScalarString(k []rune) bool {
	for _, r := range k {
		if r >= 0xD800 && r <= 0xDFFF {
			return false
		}
	}
	return true
}

func (c *checker) str(path string, v *Value) (string, bool) {
	if v == nil {
		return "", false
	}
	if v.Kind != KString {
		c.bad("%s is a %s, not a string", path, v.Kind)
		return "", false
	}
	return string(v.Str), true
}

func (c *checker) boolean(path string, v *Value) (bool, bool) {
	if v == nil {
		return false, false
	}
	if v.Kind != KBool {
		c.bad("%s is a %s, not a boolean", path, v.Kind)
		return false, false
	}
	return v.Bool, true
}

// integer checks an integer value (a number without fraction) within
// min..2^53-1.
func (c *checker) integer(path string, v *Value, min int64) (int64, bool) {
	if v == nil {
		return 0, false
	}
	if v.Kind != KNumber || v.Num != math.Trunc(v.Num) || math.IsInf(v.Num, 0) {
		c.bad("%s is not an integer", path)
		return 0, false
	}
	if v.Num < float64(min) || v.Num > maxSafe {
		c.bad("%s is %s, outside %d..2^53-1", path, v.NumText, min)
		return 0, false
	}
	return int64(v.Num), true
}

func (c *checker) number(path string, v *Value) (float64, bool) {
	if v == nil {
		return 0, false
	}
	if v.Kind != KNumber {
		c.bad("%s is a %s, not a number", path, v.Kind)
		return 0, false
	}
	if _, err := FormatNumber(v.Num); err != nil {
		c.bad("%s: %s", path, err.Error())
		return 0, false
	}
	return v.Num, true
}

var (
	reSpiffeTD   = regexp.MustCompile(`^[a-z0-9._-]+$`)
	reSpiffeSeg  = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	reEventID    = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	reB64Key     = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
	reSignature  = regexp.MustCompile(`^[A-Za-z0-9_-]{86}$`)
	maxSessionID = 32
)

// SpiffeProblem returns why s is not a SPIFFE ID (spec section 1), or "".
func SpiffeProblem(s string) string {
	if len(s) > 2048 {
		return "longer than 2048 bytes"
	}
	if !strings.HasPrefix(s, "spiffe://") {
		return `does not start with "spiffe://" in lowercase`
	}
	rest := s[len("spiffe://"):]
	td, path, hasPath := strings.Cut(rest, "/")
	if !reSpiffeTD.MatchString(td) {
		return "the trust domain is empty or holds a character other than lowercase letters, digits, '.', '-', '_'"
	}
	if !hasPath {
		return ""
	}
	for _, seg := range strings.Split(path, "/") {
		switch {
		case seg == "":
			return "the path has an empty segment"
		case seg == "." || seg == "..":
			return "the path has a dot segment"
		case !reSpiffeSeg.MatchString(seg):
			return "a path segment holds a character other than letters, digits, '.', '-', '_'"
		}
	}
	return ""
}

// docTime checks an RFC 3339 date-time as spec section 2.2 reads it (the
// "rfc3339" format the regulators' guide names) and returns its instant in
// milliseconds: fraction digits beyond the millisecond truncated, a leap
// second read as millisecond 999 of second 59.
func (c *checker) docTime(path string, v *Value) (int64, bool) {
	s, ok := c.str(path, v)
	if !ok {
		return 0, false
	}
	ms, why := ParseRFC3339(s)
	if why != "" {
		c.bad("%s %q is not an RFC 3339 date-time: %s", path, s, why)
		return 0, false
	}
	return ms, true
}

var reRFC3339 = regexp.MustCompile(`^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$`)

func atoi(s string) int {
	n := 0
	for _, ch := range s {
		n = n*10 + int(ch-'0')
	}
	return n
}

// ParseRFC3339 returns the instant of s in milliseconds since 1970, or why it
// is not an RFC 3339 date-time.
func ParseRFC3339(s string) (int64, string) {
	m := reRFC3339.FindStringSubmatch(s)
	if m == nil {
		return 0, "not of the form YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)"
	}
	year, month, day := atoi(m[1]), atoi(m[2]), atoi(m[3])
	hour, minute, second := atoi(m[4]), atoi(m[5]), atoi(m[6])
	if month < 1 || month > 12 {
		return 0, "month out of range"
	}
	leap := year%4 == 0 && (year%100 != 0 || year%400 == 0)
	days := [13]int{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
	if leap {
		days[2] = 29
	}
	if day < 1 || day > days[month] {
		return 0, "day out of range"
	}
	if hour > 23 || minute > 59 || second > 60 {
		return 0, "time of day out of range"
	}
	ms := 0
	if frac := m[7]; frac != "" {
		digits := (frac[1:] + "00")[:3]
		ms = atoi(digits)
	}
	if second == 60 {
		second, ms = 59, 999
	}
	offset := 0
	if z := m[8]; z != "Z" && z != "z" {
		oh, om := atoi(z[1:3]), atoi(z[4:6])
		if oh > 23 || om > 59 {
			return 0, "offset out of range"
		}
		offset = (oh*60 + om) * 60
		if z[0] == '-' {
			offset = -offset
		}
	}
	t := time.Date(year, time.Month(month), day, hour, minute, second, ms*int(time.Millisecond), time.UTC)
	return t.UnixMilli() - int64(offset)*1000, ""
}

// Addendum is what the later steps need from a well-formed addendum.
type Addendum struct {
	AgentID   string
	Stream    []rune
	Seq       int64
	PrevHash  string
	Triggered bool
	Trigger   string
}

// CheckSchema returns the problems of an addendum's shape and, when there are
// none, its parts.
// The second list holds the relations between fields that do not hold (code
// "inconsistent", an extension: the document is well-formed and keeps its
// place in its chain).
func CheckSchema(doc *Value) (*Addendum, []string, []string) {
	c := &checker{}
	if doc.Kind != KObject {
		return nil, []string{fmt.Sprintf("the document is a %s, not an object", doc.Kind)}, nil
	}
	a := &Addendum{}
	c.members("the addendum", doc,
		[]string{"type", "agent_id", "session_ids", "gateway", "kill_event_id", "issued_at", "chain"},
		[]string{"evidence", "issuer", "signature"})

	if t, ok := c.str("type", doc.Get("type")); ok && t != "killswitch.trace-addendum/v1" {
		c.bad("type is %q, not \"killswitch.trace-addendum/v1\"", t)
	}
	if id, ok := c.str("agent_id", doc.Get("agent_id")); ok {
		if why := SpiffeProblem(id); why != "" {
			c.bad("agent_id is not a SPIFFE ID: %s", why)
		}
		a.AgentID = id
	}
	sessions := doc.Get("session_ids")
	if sessions != nil {
		if sessions.Kind != KArray {
			c.bad("session_ids is a %s, not an array", sessions.Kind)
		} else {
			if len(sessions.Arr) > maxSessionID {
				c.bad("session_ids has %d entries, more than %d", len(sessions.Arr), maxSessionID)
			}
			seen := map[string]bool{}
			for i, s := range sessions.Arr {
				if _, ok := c.str(fmt.Sprintf("session_ids[%d]", i), s); ok {
					if seen[keyID(s.Str)] {
						c.rel("session_ids[%d] repeats an earlier session id (they are the distinct session ids)", i)
					}
					seen[keyID(s.Str)] = true
				}
			}
		}
	}

	var threshold float64
	var minCalls, windowSeconds int64
	haveRule := false
	gw := doc.Get("gateway")
	if c.members("gateway", gw, []string{"kill_switch_triggered", "kill_switch"}, nil) {
		a.Triggered, _ = c.boolean("gateway.kill_switch_triggered", gw.Get("kill_switch_triggered"))
		ks := gw.Get("kill_switch")
		if c.members("gateway.kill_switch", ks, []string{"enabled", "window_seconds", "deny_rate_threshold", "min_calls", "trigger"}, nil) {
			c.boolean("gateway.kill_switch.enabled", ks.Get("enabled"))
			ws, ok1 := c.integer("gateway.kill_switch.window_seconds", ks.Get("window_seconds"), 1)
			th, ok2 := c.number("gateway.kill_switch.deny_rate_threshold", ks.Get("deny_rate_threshold"))
			if ok2 && (th <= 0 || th > 1) {
				c.bad("gateway.kill_switch.deny_rate_threshold %s is not in 0 < x <= 1", ks.Get("deny_rate_threshold").NumText)
				ok2 = false
			}
			mc, ok3 := c.integer("gateway.kill_switch.min_calls", ks.Get("min_calls"), 1)
			windowSeconds, threshold, minCalls, haveRule = ws, th, mc, ok1 && ok2 && ok3
			if tr, ok := c.str("gateway.kill_switch.trigger", ks.Get("trigger")); ok {
				if tr != "deny_rate" && tr != "operator" {
					c.bad("gateway.kill_switch.trigger is %q, not \"deny_rate\" or \"operator\"", tr)
				}
				a.Trigger = tr
			}
		}
	}
	if id, ok := c.str("kill_event_id", doc.Get("kill_event_id")); ok && !reEventID.MatchString(id) {
		c.bad("kill_event_id is not \"sha256:\" + 64 lowercase hex digits")
	}
	c.docTime("issued_at", doc.Get("issued_at"))

	ch := doc.Get("chain")
	if c.members("chain", ch, []string{"stream", "sequence_number", "prev_hash"}, nil) {
		if s := ch.Get("stream"); s != nil {
			if _, ok := c.str("chain.stream", s); ok {
				if len(s.Str) == 0 {
					c.bad("chain.stream is empty")
				}
				a.Stream = s.Str
			}
		}
		a.Seq, _ = c.integer("chain.sequence_number", ch.Get("sequence_number"), 1)
		if ph, ok := c.str("chain.prev_hash", ch.Get("prev_hash")); ok {
			if ph != "genesis" && !reEventID.MatchString(ph) {
				c.bad("chain.prev_hash is neither \"genesis\" nor \"sha256:\" + 64 lowercase hex digits")
			}
			a.PrevHash = ph
		}
	}

	if iss := doc.Get("issuer"); c.members("issuer", iss, []string{"kid", "jwk"}, nil) {
		if kid, ok := c.str("issuer.kid", iss.Get("kid")); ok && !reB64Key.MatchString(kid) {
			c.bad("issuer.kid is not 43 base64url characters")
		}
		jwk := iss.Get("jwk")
		if c.members("issuer.jwk", jwk, []string{"crv", "kty", "x"}, []string{"kid", "alg", "use"}) {
			if s, ok := c.str("issuer.jwk.kid", jwk.Get("kid")); ok && !reB64Key.MatchString(s) {
				c.bad("issuer.jwk.kid is not 43 base64url characters")
			}
			if s, ok := c.str("issuer.jwk.alg", jwk.Get("alg")); ok && s != "EdDSA" {
				c.bad("issuer.jwk.alg is not \"EdDSA\"")
			}
			if s, ok := c.str("issuer.jwk.use", jwk.Get("use")); ok && s != "sig" {
				c.bad("issuer.jwk.use is not \"sig\"")
			}
			if s, ok := c.str("issuer.jwk.crv", jwk.Get("crv")); ok && s != "Ed25519" {
				c.bad("issuer.jwk.crv is not \"Ed25519\"")
			}
			if s, ok := c.str("issuer.jwk.kty", jwk.Get("kty")); ok && s != "OKP" {
				c.bad("issuer.jwk.kty is not \"OKP\"")
			}
			if x, ok := c.str("issuer.jwk.x", jwk.Get("x")); ok && !reB64Key.MatchString(x) {
				c.bad("issuer.jwk.x is not 43 base64url characters")
			}
		}
	}
	if sig, ok := c.str("signature", doc.Get("signature")); ok {
		if !reSignature.MatchString(sig) {
			c.bad("signature is not 86 base64url characters")
		}
		if !doc.Has("issuer") {
			c.bad("a signed addendum has no issuer")
		}
	}

	ev := doc.Get("evidence")
	if c.members("evidence", ev, []string{"window_start", "window_end", "calls", "denies", "advisory_denies", "deny_rate", "tripping_decision_id", "source"}, nil) {
		ws, okWS := c.docTime("evidence.window_start", ev.Get("window_start"))
		we, okWE := c.docTime("evidence.window_end", ev.Get("window_end"))
		calls, okC := c.integer("evidence.calls", ev.Get("calls"), 0)
		denies, okD := c.integer("evidence.denies", ev.Get("denies"), 0)
		adv, okA := c.integer("evidence.advisory_denies", ev.Get("advisory_denies"), 0)
		rate, okR := c.number("evidence.deny_rate", ev.Get("deny_rate"))
		if okR && (rate < 0 || rate > 1) {
			c.bad("evidence.deny_rate %s is not in 0..1", ev.Get("deny_rate").NumText)
			okR = false
		}
		if id, ok := c.str("evidence.tripping_decision_id", ev.Get("tripping_decision_id")); ok {
			if n := len(ev.Get("tripping_decision_id").Str); n < 1 || n > 128 {
				c.bad("evidence.tripping_decision_id has %d characters, not 1 to 128", n)
			}
			_ = id
		}
		src := ev.Get("source")
		if src != nil && src.Kind == KObject && src.Has("topic") {
			if c.members("evidence.source", src, []string{"topic", "partition", "offset_from", "offset_to"}, nil) {
				topic, okT := c.str("evidence.source.topic", src.Get("topic"))
				p, okP := c.integer("evidence.source.partition", src.Get("partition"), 0)
				from, ok1 := c.integer("evidence.source.offset_from", src.Get("offset_from"), 0)
				to, ok2 := c.integer("evidence.source.offset_to", src.Get("offset_to"), 0)
				if ok1 && ok2 && from > to {
					c.rel("evidence.source.offset_from %d is after offset_to %d", from, to)
				}
				if okT && okP && a.Stream != nil && string(a.Stream) != fmt.Sprintf("%s/%d", topic, p) {
					c.rel("evidence.source names topic %q partition %d, but chain.stream is %s", topic, p, canonString(a.Stream))
				}
			}
		} else if c.members("evidence.source", src, []string{"file", "line_from", "line_to"}, nil) {
			file, okF := c.str("evidence.source.file", src.Get("file"))
			from, ok1 := c.integer("evidence.source.line_from", src.Get("line_from"), 1)
			to, ok2 := c.integer("evidence.source.line_to", src.Get("line_to"), 1)
			if ok1 && ok2 && from > to {
				c.rel("evidence.source.line_from %d is after line_to %d", from, to)
			}
			if okF && a.Stream != nil && !runesEqual(src.Get("file").Str, a.Stream) {
				c.rel("evidence.source.file %q is not chain.stream %s", file, canonString(a.Stream))
			}
		}
		// Relations stated in spec sections 2.4 and 3.
		if okC && okD && okA && !(adv <= denies && denies <= calls) {
			c.rel("evidence counts do not satisfy advisory_denies <= denies <= calls")
		}
		if okC && okD && okR && calls > 0 && rate != float64(denies)/float64(calls) {
			c.rel("evidence.deny_rate %s is not denies / calls (%d / %d)", ev.Get("deny_rate").NumText, denies, calls)
		}
		if haveRule && okC && okD && okR && (calls < minCalls || rate < threshold) {
			c.rel("the evidence does not meet the recorded rule (calls >= min_calls and deny_rate >= deny_rate_threshold)")
		}
		if haveRule && okWS && okWE && we-ws != windowSeconds*1000 {
			c.rel("evidence.window_end - window_start is not gateway.kill_switch.window_seconds")
		}
	}
	// Relations between the trigger, the action and the evidence (sections 3, 4).
	switch a.Trigger {
	case "deny_rate":
		if ev == nil {
			c.rel("an automatic trip (trigger deny_rate) has no evidence")
		}
		if gw != nil && gw.Get("kill_switch_triggered") != nil && !a.Triggered {
			c.rel("trigger deny_rate on an unblock (kill_switch_triggered false): unblocks are operator actions")
		}
	case "operator":
		if ev != nil {
			c.rel("an operator action (trigger operator) has evidence")
		}
		if sessions != nil && sessions.Kind == KArray && len(sessions.Arr) != 0 {
			c.rel("an operator action has session_ids")
		}
	}
	// Every number must have a canonical form, or no signature or digest can be
	// computed over the document.
	if _, err := Canonical(doc); err != nil && len(c.problems) == 0 {
		c.bad("the document cannot be written in canonical JSON: %s", err.Error())
	}
	if len(c.problems) > 0 {
		return nil, c.problems, nil
	}
	return a, nil, c.relations
}
