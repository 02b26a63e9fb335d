package main

// Canonical JSON (spec section 5): keys sorted code point by code point, no
// whitespace, strings escaped as the spec lists (pure ASCII output), integers
// within +-(2^53-1) without fraction, other numbers in the shortest
// round-trip decimal form within 0.0001 <= |n| < 10^16.

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

const maxSafe = 9007199254740991 // 2^53 - 1

func compareRunes(a, b []rune) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return len(a) - len(b)
}

const hexdigits = "0123456789abcdef"

func writeU(sb *strings.Builder, u rune) {
	sb.WriteString(`\u`)
	sb.WriteByte(hexdigits[(u>>12)&0xf])
	sb.WriteByte(hexdigits[(u>>8)&0xf])
	sb.WriteByte(hexdigits[(u>>4)&0xf])
	sb.WriteByte(hexdigits[u&0xf])
}

func writeString(sb *strings.Builder, s []rune) {
	sb.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			sb.WriteString(`\"`)
		case r == '\\':
			sb.WriteString(`\\`)
		case r == 0x08:
			sb.WriteString(`\b`)
		case r == 0x09:
			sb.WriteString(`\t`)
		case r == 0x0A:
			sb.WriteString(`\n`)
		case r == 0x0C:
			sb.WriteString(`\f`)
		case r == 0x0D:
			sb.WriteString(`\r`)
		case r < 0x20:
			writeU(sb, r)
		case r <= 0x7E:
			sb.WriteByte(byte(r))
		case r > 0xFFFF:
			v := r - 0x10000
			writeU(sb, 0xD800+(v>>10))
			writeU(sb, 0xDC00+(v&0x3FF))
		default: // U+007F and up to U+FFFF, lone surrogates included
			writeU(sb, r)
		}
	}
	sb.WriteByte('"')
}

func canonString(s []rune) string {
	var sb strings.Builder
	writeString(&sb, s)
	return sb.String()
}

// FormatNumber writes a number as the canonical form requires, or refuses it.
func FormatNumber(f float64) (string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", errors.New("a number that is not finite has no canonical form")
	}
	if f == math.Trunc(f) {
		if math.Abs(f) > maxSafe {
			return "", fmt.Errorf("the integer %s is outside +-(2^53 - 1)", strconv.FormatFloat(f, 'g', -1, 64))
		}
		if f == 0 {
			return "0", nil // -0 is written 0
		}
		return strconv.FormatFloat(f, 'f', 0, 64), nil
	}
	a := math.Abs(f)
	if a < 0.0001 || a >= 1e16 {
		return "", fmt.Errorf("the number %s is outside 0.0001 <= |n| < 10^16", strconv.FormatFloat(f, 'g', -1, 64))
	}
	return strconv.FormatFloat(f, 'f', -1, 64), nil
}

func writeCanon(sb *strings.Builder, v *Value) error {
	switch v.Kind {
	case KNull:
		sb.WriteString("null")
	case KBool:
		if v.Bool {
			sb.WriteString("true")
		} else {
			sb.WriteString("false")
		}
	case KNumber:
		s, err := FormatNumber(v.Num)
		if err != nil {
			return err
		}
		sb.WriteString(s)
	case KString:
		writeString(sb, v.Str)
	case KArray:
		sb.WriteByte('[')
		for i, el := range v.Arr {
			if i > 0 {
				sb.WriteByte(',')
			}
			if err := writeCanon(sb, el); err != nil {
				return err
			}
		}
		sb.WriteByte(']')
	case KObject:
		members := append([]Member(nil), v.Obj...)
		sort.SliceStable(members, func(i, j int) bool { return compareRunes(members[i].Key, members[j].Key) < 0 })
		sb.WriteByte('{')
		for i, m := range members {
			if i > 0 {
				sb.WriteByte(',')
			}
			writeString(sb, m.Key)
			sb.WriteByte(':')
			if err := writeCanon(sb, m.Val); err != nil {
				return err
			}
		}
		sb.WriteByte('}')
	}
	return nil
}

// Canonical returns the canonical JSON text of v (pure ASCII, so its bytes
// are its UTF-8 encoding).
func Canonical(v *Value) ([]byte, error) {
	var sb strings.Builder
	if err := writeCanon(&sb, v); err != nil {
		return nil, err
	}
	return []byte(sb.String()), nil
}
