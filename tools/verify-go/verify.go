package main

// Verification of an addenda file: for each non-blank line, strict JSON
// (section 6), the addendum shape (section 4), the signature (section 5), and
// the hash chain of its stream (sections 4 and 9), in that order. A line that
// fails the first two steps is not checked further; one that fails the
// signature still takes its place in its chain.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"unicode/utf8"
)

type Finding struct {
	Code string
	Msg  string
}

type LineResult struct {
	Line     int
	Stream   []rune // nil when unknown
	Seq      int64
	Findings []Finding
}

type Tip struct {
	Stream []rune
	Seq    int64
	Hash   string
	Count  int
}

type pendingPrev struct {
	res  *LineResult
	prev string
}

type chainState struct {
	name    []rune
	seen    map[int64]string // sequence number -> digest of the first addendum seen with it
	max     int64
	count   int
	pending map[int64][]pendingPrev // predecessor sequence -> addenda waiting to check prev_hash
}

// isBlank: empty, or only white space. The spec does not define white space;
// this is ECMAScript's (String.prototype.trim): TAB, LF, VT, FF, CR, space,
// U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000,
// U+FEFF. (Not U+0085, which Unicode counts as white space.)
func isBlank(line []byte) bool {
	if !utf8.Valid(line) {
		return false
	}
	for _, r := range string(line) {
		switch {
		case r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r' || r == ' ':
		case r == 0xA0 || r == 0x1680 || (r >= 0x2000 && r <= 0x200A) || r == 0x2028 || r == 0x2029:
		case r == 0x202F || r == 0x205F || r == 0x3000 || r == 0xFEFF:
		default:
			return false
		}
	}
	return true
}

// SplitLines splits at LF; a last line without LF is a line too.
func SplitLines(data []byte) [][]byte {
	lines := bytes.Split(data, []byte("\n"))
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	return lines
}

func Digest(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Verify checks every addendum of data and returns one result per non-blank
// line, in line order, and every stream's tip.
func Verify(data []byte, trusted map[string]TrustedKey) ([]*LineResult, []Tip) {
	var results []*LineResult
	chains := map[string]*chainState{}
	var order []string
	for idx, line := range SplitLines(data) {
		if isBlank(line) {
			continue
		}
		res := &LineResult{Line: idx + 1}
		results = append(results, res)
		add := func(code, format string, args ...any) {
			res.Findings = append(res.Findings, Finding{code, fmt.Sprintf(format, args...)})
		}

		doc, perr := ParseStrict(line)
		if perr != nil {
			add(perr.Code, "%s", perr.Msg)
			continue
		}
		a, problems, relations := CheckSchema(doc)
		if len(problems) > 0 {
			for _, p := range problems {
				add("schema_invalid", "%s", p)
			}
			continue
		}
		res.Stream, res.Seq = a.Stream, a.Seq
		if code, msg := CheckSignature(doc, trusted); code != "" {
			add(code, "%s", msg)
		}
		for _, r := range relations {
			add("inconsistent", "%s", r)
		}

		whole, _ := Canonical(doc) // cannot fail: CheckSchema checked every number
		h := Digest(whole)
		id := keyID(a.Stream)
		st := chains[id]
		s := a.Seq
		name := canonString(a.Stream)
		if st == nil {
			st = &chainState{name: a.Stream, seen: map[int64]string{}, pending: map[int64][]pendingPrev{}}
			chains[id] = st
			order = append(order, id)
			if s > 1 {
				add("chain_head_missing", "the first addendum of stream %s has sequence number %d: 1 to %d are missing", name, s, s-1)
			}
		} else if prior, dup := st.seen[s]; dup {
			if prior == h {
				add("chain_duplicate", "sequence number %d of stream %s appears again with identical content", s, name)
			} else {
				add("chain_fork", "sequence number %d of stream %s appears again with different content", s, name)
			}
			continue
		} else if s < st.max {
			add("chain_reordered", "sequence number %d of stream %s comes after %d", s, name, st.max)
		} else if s > st.max+1 {
			if s == st.max+2 {
				add("chain_gap", "stream %s jumps from %d to %d: %d is missing", name, st.max, s, st.max+1)
			} else {
				add("chain_gap", "stream %s jumps from %d to %d: %d to %d are missing", name, st.max, s, st.max+1, s-1)
			}
		}
		st.count++
		// prev_hash: genesis for 1, else the digest of sequence s-1 of this
		// stream (checked now if it was seen, or when it turns up later).
		switch {
		case s == 1 && a.PrevHash != "genesis":
			add("chain_prev_hash_mismatch", "sequence number 1 of stream %s has prev_hash %s, not \"genesis\"", name, a.PrevHash)
		case s > 1 && a.PrevHash == "genesis":
			add("chain_prev_hash_mismatch", "sequence number %d of stream %s has prev_hash \"genesis\"", s, name)
		case s > 1:
			if ph, ok := st.seen[s-1]; ok {
				if ph != a.PrevHash {
					add("chain_prev_hash_mismatch", "prev_hash of sequence number %d of stream %s is not the digest of sequence number %d (%s)", s, name, s-1, ph)
				}
			} else {
				st.pending[s-1] = append(st.pending[s-1], pendingPrev{res, a.PrevHash})
			}
		}
		for _, w := range st.pending[s] {
			if w.prev != h {
				w.res.Findings = append(w.res.Findings, Finding{"chain_prev_hash_mismatch",
					fmt.Sprintf("prev_hash of sequence number %d of stream %s is not the digest of sequence number %d (line %d, %s)", s+1, name, s, res.Line, h)})
			}
		}
		delete(st.pending, s)
		st.seen[s] = h
		if s > st.max {
			st.max = s
		}
	}
	var tips []Tip
	for _, id := range order {
		st := chains[id]
		tips = append(tips, Tip{Stream: st.name, Seq: st.max, Hash: st.seen[st.max], Count: st.count})
	}
	sort.SliceStable(tips, func(i, j int) bool { return compareRunes(tips[i].Stream, tips[j].Stream) < 0 })
	return results, tips
}
