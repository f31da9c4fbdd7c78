package wire

import (
	"errors"
	"testing"
)

var errBad = errors.New("bad")

func TestDecoderRoundTrip(t *testing.T) {
	b := AppendUvarint(nil, 300)
	b = AppendString(b, "hello")
	b = AppendBytes(b, []byte{1, 2})
	b = append(b, 7)
	d := NewDecoder(b, errBad, "thing")
	if got := d.Uvarint(); got != 300 {
		t.Fatalf("Uvarint = %d", got)
	}
	if got := d.String(); got != "hello" {
		t.Fatalf("String = %q", got)
	}
	if got := d.Bytes(); len(got) != 2 || cap(got) != 2 || got[1] != 2 {
		t.Fatalf("Bytes = %v (cap %d)", got, cap(got))
	}
	if got := d.Byte(); got != 7 {
		t.Fatalf("Byte = %d", got)
	}
	if err := d.Finish(); err != nil {
		t.Fatal(err)
	}
}

func TestDecoderRejects(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		read func(*Decoder)
	}{
		{"empty byte", nil, func(d *Decoder) { d.Byte() }},
		{"truncated varint", []byte{0x80}, func(d *Decoder) { d.Uvarint() }},
		{"non-minimal varint", []byte{0x80, 0x00}, func(d *Decoder) { d.Uvarint() }},
		{"overflow", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, func(d *Decoder) { d.Uvarint() }},
		{"count beyond input", []byte{5, 1, 1}, func(d *Decoder) { d.Count(1) }},
		{"count beyond input at size 2", []byte{2, 1, 1, 1}, func(d *Decoder) { d.Count(2) }},
		{"bytes beyond input", []byte{3, 'a'}, func(d *Decoder) { d.Bytes() }},
		{"next beyond input", []byte{1}, func(d *Decoder) { d.Next(2) }},
		{"wrong version", []byte{2}, func(d *Decoder) { d.Version(1) }},
		{"trailing", []byte{1, 9}, func(d *Decoder) { d.Byte() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder(tt.data, errBad, "thing")
			tt.read(&d)
			err := d.Finish()
			if !errors.Is(err, errBad) {
				t.Fatalf("err = %v; want errBad", err)
			}
			// The first error sticks and later reads return zero values.
			if d.Byte() != 0 || d.Uvarint() != 0 || d.Bytes() != nil || d.Err() != err {
				t.Fatal("reads after an error did not return zero values")
			}
		})
	}
}

func FuzzDecoder(f *testing.F) {
	f.Add([]byte{1, 2, 'h', 'i', 0x80, 0x01})
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder(data, errBad, "fuzz")
		for d.Err() == nil && d.Len() > 0 {
			switch d.Byte() % 3 {
			case 0:
				d.Uvarint()
			case 1:
				d.Bytes()
			case 2:
				d.Count(2)
			}
		}
		if err := d.Err(); err != nil && !errors.Is(err, errBad) {
			t.Fatalf("error %v does not wrap the sentinel", err)
		}
	})
}
