package main

// Strict JSON reader (spec section 6): refuses duplicate keys (compared after
// unescaping) and nesting deeper than 64 levels. Strings are kept as code
// points ([]rune), so that escaped lone surrogates survive and keys can be
// sorted and compared code point by code point (spec section 5).

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting allowed: more than 64 arrays and objects
// open at once is refused.
const MaxDepth = 64

type Kind int

const (
	KNull Kind = iota
	KBool
	KNumber
	KString
	KArray
	KObject
)

func (k Kind) String() string {
	switch k {
	case KNull:
		return "null"
	case KBool:
		return "boolean"
	case KNumber:
		return "number"
	case KString:
		return "string"
	case KArray:
		return "array"
	case KObject:
		return "object"
	}
	return "?"
}

type Member struct {
	Key []rune
	Val *Value
}

type Value struct {
	Kind    Kind
	Bool    bool
	Num     float64
	NumText string
	Str     []rune
	Arr     []*Value
	Obj     []Member
}

// Get returns the member named key of an object, or nil.
func (v *Value) Get(key string) *Value {
	if v == nil || v.Kind != KObject {
		return nil
	}
	want := []rune(key)
	for _, m := range v.Obj {
		if runesEqual(m.Key, want) {
			return m.Val
		}
	}
	return nil
}

// Has reports whether an object has the member key.
func (v *Value) Has(key string) bool { return v.Get(key) != nil }

// Without returns a shallow copy of an object without the member key.
func (v *Value) Without(key string) *Value {
	out := &Value{Kind: KObject}
	want := []rune(key)
	for _, m := range v.Obj {
		if !runesEqual(m.Key, want) {
			out.Obj = append(out.Obj, m)
		}
	}
	return out
}

func runesEqual(a, b []rune) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// keyID maps a key to a map key that keeps lone surrogates apart from U+FFFD.
func keyID(k []rune) string {
	b := make([]byte, 0, 4*len(k))
	for _, r := range k {
		b = append(b, byte(r>>24), byte(r>>16), byte(r>>8), byte(r))
	}
	return string(b)
}

// ParseError carries the finding code of a refused text: invalid_json,
// duplicate_key or too_deep.
type ParseError struct {
	Code string
	Msg  string
}

func (e *ParseError) Error() string { return e.Code + ": " + e.Msg }

type parser struct {
	s     []byte
	i     int
	depth int
}

// ParseStrict parses one JSON text strictly. The first problem met in text
// order decides the code.
func ParseStrict(text []byte) (*Value, *ParseError) {
	if !utf8.Valid(text) {
		return nil, &ParseError{"invalid_json", "the text is not valid UTF-8"}
	}
	p := &parser{s: text}
	p.ws()
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.s) {
		return nil, p.syntax("unexpected text after the JSON value")
	}
	return v, nil
}

func (p *parser) syntax(msg string) *ParseError {
	return &ParseError{"invalid_json", fmt.Sprintf("%s at byte %d", msg, p.i+1)}
}

func (p *parser) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) value() (*Value, *ParseError) {
	if p.i >= len(p.s) {
		return nil, p.syntax("unexpected end of text")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		return &Value{Kind: KString, Str: s}, nil
	case c == 't':
		return p.lit("true", &Value{Kind: KBool, Bool: true})
	case c == 'f':
		return p.lit("false", &Value{Kind: KBool, Bool: false})
	case c == 'n':
		return p.lit("null", &Value{Kind: KNull})
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	default:
		r, _ := utf8.DecodeRune(p.s[p.i:])
		return nil, p.syntax(fmt.Sprintf("unexpected character %U", r))
	}
}

func (p *parser) lit(word string, v *Value) (*Value, *ParseError) {
	if len(p.s)-p.i >= len(word) && string(p.s[p.i:p.i+len(word)]) == word {
		p.i += len(word)
		return v, nil
	}
	return nil, p.syntax("invalid literal")
}

func (p *parser) open() *ParseError {
	p.depth++
	if p.depth > MaxDepth {
		return &ParseError{"too_deep", fmt.Sprintf("nesting deeper than %d levels (at byte %d)", MaxDepth, p.i+1)}
	}
	return nil
}

func (p *parser) object() (*Value, *ParseError) {
	if err := p.open(); err != nil {
		return nil, err
	}
	p.i++ // {
	v := &Value{Kind: KObject}
	seen := map[string]bool{}
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		p.depth--
		return v, nil
	}
	for {
		p.ws()
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return nil, p.syntax("expected a member name")
		}
		keyAt := p.i
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		id := keyID(k)
		if seen[id] {
			return nil, &ParseError{"duplicate_key", fmt.Sprintf("duplicate key %s (at byte %d)", canonString(k), keyAt+1)}
		}
		seen[id] = true
		p.ws()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return nil, p.syntax("expected ':'")
		}
		p.i++
		p.ws()
		val, err := p.value()
		if err != nil {
			return nil, err
		}
		v.Obj = append(v.Obj, Member{Key: k, Val: val})
		p.ws()
		if p.i >= len(p.s) {
			return nil, p.syntax("unexpected end of text in an object")
		}
		if p.s[p.i] == ',' {
			p.i++
			continue
		}
		if p.s[p.i] == '}' {
			p.i++
			p.depth--
			return v, nil
		}
		return nil, p.syntax("expected ',' or '}'")
	}
}

func (p *parser) array() (*Value, *ParseError) {
	if err := p.open(); err != nil {
		return nil, err
	}
	p.i++ // [
	v := &Value{Kind: KArray, Arr: []*Value{}}
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
		p.depth--
		return v, nil
	}
	for {
		p.ws()
		el, err := p.value()
		if err != nil {
			return nil, err
		}
		v.Arr = append(v.Arr, el)
		p.ws()
		if p.i >= len(p.s) {
			return nil, p.syntax("unexpected end of text in an array")
		}
		if p.s[p.i] == ',' {
			p.i++
			continue
		}
		if p.s[p.i] == ']' {
			p.i++
			p.depth--
			return v, nil
		}
		return nil, p.syntax("expected ',' or ']'")
	}
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func (p *parser) hex4() (rune, bool) {
	if len(p.s)-p.i < 4 {
		return 0, false
	}
	var r rune
	for k := 0; k < 4; k++ {
		h := hexVal(p.s[p.i+k])
		if h < 0 {
			return 0, false
		}
		r = r<<4 | rune(h)
	}
	p.i += 4
	return r, true
}

// str reads a string starting at the opening quote and returns its code
// points. An escaped surrogate pair becomes one code point; a lone escaped
// surrogate is kept as its own value.
func (p *parser) str() ([]rune, *ParseError) {
	p.i++ // opening quote
	out := []rune{}
	for {
		if p.i >= len(p.s) {
			return nil, p.syntax("unterminated string")
		}
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return out, nil
		case c == '\\':
			p.i++
			if p.i >= len(p.s) {
				return nil, p.syntax("unterminated escape")
			}
			e := p.s[p.i]
			p.i++
			switch e {
			case '"', '\\', '/':
				out = append(out, rune(e))
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, ok := p.hex4()
				if !ok {
					return nil, p.syntax("invalid \\u escape")
				}
				if r >= 0xD800 && r <= 0xDBFF && len(p.s)-p.i >= 6 && p.s[p.i] == '\\' && p.s[p.i+1] == 'u' {
					save := p.i
					p.i += 2
					lo, ok := p.hex4()
					if ok && lo >= 0xDC00 && lo <= 0xDFFF {
						r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
					} else {
						p.i = save // not a pair: the next escape is read on its own
					}
				}
				out = append(out, r)
			default:
				p.i--
				return nil, p.syntax(fmt.Sprintf("invalid escape \\%c", e))
			}
		case c < 0x20:
			return nil, p.syntax("unescaped control character in a string")
		case c < 0x80:
			out = append(out, rune(c))
			p.i++
		default:
			r, size := utf8.DecodeRune(p.s[p.i:])
			out = append(out, r)
			p.i += size
		}
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func (p *parser) number() (*Value, *ParseError) {
	start := p.i
	if p.s[p.i] == '-' {
		p.i++
	}
	if p.i >= len(p.s) || !isDigit(p.s[p.i]) {
		return nil, p.syntax("invalid number")
	}
	if p.s[p.i] == '0' {
		p.i++
	} else {
		for p.i < len(p.s) && isDigit(p.s[p.i]) {
			p.i++
		}
	}
	if p.i < len(p.s) && p.s[p.i] == '.' {
		p.i++
		if p.i >= len(p.s) || !isDigit(p.s[p.i]) {
			return nil, p.syntax("invalid number")
		}
		for p.i < len(p.s) && isDigit(p.s[p.i]) {
			p.i++
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.i++
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		if p.i >= len(p.s) || !isDigit(p.s[p.i]) {
			return nil, p.syntax("invalid number")
		}
		for p.i < len(p.s) && isDigit(p.s[p.i]) {
			p.i++
		}
	}
	text := string(p.s[start:p.i])
	// ParseFloat rounds correctly; an overflow gives +-Inf (refused by the
	// canonical form later), an underflow gives 0 as JSON.parse does.
	f, _ := strconv.ParseFloat(text, 64)
	return &Value{Kind: KNumber, Num: f, NumText: text}, nil
}
