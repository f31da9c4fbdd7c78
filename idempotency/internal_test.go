package idempotency

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"", "abc", `"abc"`, `"a\"b\\c"`, `"`, `""`, `"a`, `"a\x"`, `"a"b`, " k ",
		strings.Repeat("k", MaxKeyLen+1), "0191f4c2-7a4e-7c3a-9c1d-1f2e3d4c5b6a", "\x00", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, field string) {
		key, err := ParseKey(field)
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) || key != "" {
				t.Fatalf("ParseKey(%q) = %q, %v; want \"\" and ErrInvalidKey", field, key, err)
			}
			return
		}
		if len(key) == 0 || len(key) > MaxKeyLen {
			t.Fatalf("ParseKey(%q) = key of length %d", field, len(key))
		}
		for i := 0; i < len(key); i++ {
			if key[i] < ' ' || key[i] >= 0x7f {
				t.Fatalf("ParseKey(%q) = %q with byte %#x", field, key, key[i])
			}
		}
		// The quoted form of the key means the same key.
		quoted := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(key) + `"`
		if again, err := ParseKey(quoted); err != nil || again != key {
			t.Fatalf("ParseKey(%q) = %q, %v; want %q", quoted, again, err, key)
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	f.Add(encodeResponse(201, http.Header{"Content-Type": {"application/json"}, "Location": {"/a", "/b"}}, []byte(`{"ok":true}`)))
	f.Add(encodeResponse(200, nil, nil))
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{1, 200, 1, 255, 255, 255, 255, 15})
	f.Add([]byte{2, 200, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		status, header, body, err := decodeResponse(b)
		if err != nil {
			if !errors.Is(err, errBadResponse) {
				t.Fatalf("decode error %v does not wrap errBadResponse", err)
			}
			return
		}
		if status < 100 || status > 999 {
			t.Fatalf("decoded status %d", status)
		}
		// Whatever decodes re-encodes to something that decodes the same.
		s2, h2, b2, err := decodeResponse(encodeResponse(status, header, body))
		if err != nil || s2 != status || !bytes.Equal(b2, body) || !reflect.DeepEqual(h2, header) {
			t.Fatalf("round trip: %d %v %q, %v; want %d %v %q", s2, h2, b2, err, status, header, body)
		}
	})
}

func TestReadBody(t *testing.T) {
	for _, tc := range []struct {
		name     string
		body     string
		declared int64
		limit    int64
		want     string
	}{
		{"empty", "", 0, 4, ""},
		{"at limit", "abcd", 4, 4, "abcd"},
		{"over limit", "abcde", 5, 4, "abcde"},
		{"far over limit", strings.Repeat("x", 100), -1, 4, "xxxxx"},
		{"unknown length", "abc", -1, 4, "abc"},
		{"declared too small", "abcdef", 2, 10, "abcdef"},
		{"declared too large", "ab", 9, 10, "ab"},
		{"large unknown", strings.Repeat("y", 3000), -1, 5000, strings.Repeat("y", 3000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []io.Reader{strings.NewReader(tc.body), iotest.OneByteReader(strings.NewReader(tc.body)),
				iotest.DataErrReader(strings.NewReader(tc.body))} {
				got, err := readBody(r, tc.declared, tc.limit)
				if err != nil || string(got) != tc.want {
					t.Fatalf("readBody = %q, %v; want %q", got, err, tc.want)
				}
			}
		})
	}
	boom := errors.New("boom")
	if _, err := readBody(iotest.ErrReader(boom), -1, 10); !errors.Is(err, boom) {
		t.Fatalf("read error = %v; want boom", err)
	}
}

func TestPollDelayBounded(t *testing.T) {
	for _, c := range []struct{ min, max time.Duration }{
		{time.Millisecond, time.Second},
		{time.Hour, 24 * time.Hour}, // doubling would overflow without the cap
		{time.Second, time.Second},
		{1, 1},
	} {
		g := New(nil, WithPollInterval(c.min, c.max))
		for n := range 100 {
			d := g.pollDelay(n)
			want := min(c.max, c.min<<min(n, 20))
			if n > 20 {
				want = c.max
			}
			if d < want/2 || d > want {
				t.Fatalf("min %v max %v: pollDelay(%d) = %v; want in [%v, %v]", c.min, c.max, n, d, want/2, want)
			}
		}
	}
}
