package attrib

import (
	"testing"
	"unicode/utf8"
)

func TestLabel(t *testing.T) {
	for in, want := range map[string]string{
		"nginx.service": "nginx.service",
		"":              "",
		"x\xff":         `x\xff`,
		"x\xfe":         `x\xfe`,
		"\x01\xc3":      "\x01\\xc3",
		"caf\u00e9":     "caf\u00e9",
		"\xe2\x82":      `\xe2\x82`,
	} {
		got := Label(in)
		if got != want {
			t.Errorf("Label(%q) = %q, want %q", in, got, want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("Label(%q) = %q is not valid UTF-8", in, got)
		}
	}
}

func FuzzLabel(f *testing.F) {
	for _, s := range []string{"x\xff", "nginx.service", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Label(s)
		if !utf8.ValidString(got) {
			t.Errorf("Label(%q) = %q, not valid UTF-8", s, got)
		}
		if utf8.ValidString(s) && got != s {
			t.Errorf("Label changed a valid name %q to %q", s, got)
		}
	})
}
