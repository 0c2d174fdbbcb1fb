package seal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func keyOf(k []byte) func(uint32) ([]byte, error) {
	return func(gen uint32) ([]byte, error) {
		if gen != 1 {
			return nil, fmt.Errorf("no root key of generation %d", gen)
		}
		return k, nil
	}
}

func mustSeal(t *testing.T, key []byte, seg int, pt []byte) []byte {
	t.Helper()
	s, err := Seal(rand.Reader, key, 1, seg, pt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealOpenRoundTrip(t *testing.T) {
	key := testKey(7)
	for _, seg := range []int{1, 16, 1000} {
		for _, n := range []int{0, 1, 15, 16, 17, 999, 1000, 1001, 5000} {
			pt := make([]byte, n)
			rand.Read(pt)
			s := mustSeal(t, key, seg, pt)
			h, err := ParseHeader(s)
			if err != nil {
				t.Fatal(err)
			}
			size, err := h.PlainSize(int64(len(s)))
			if err != nil || size != int64(n) {
				t.Fatalf("seg %d n %d: PlainSize = %d, %v", seg, n, size, err)
			}
			got, err := Open(s, keyOf(key))
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("seg %d n %d: Open = %d bytes, %v", seg, n, len(got), err)
			}
		}
	}
}

// TestTampering: every way of changing a sealed object is detected.
func TestTampering(t *testing.T) {
	key := testKey(1)
	const seg = 100
	pt := make([]byte, 350) // segments: 100, 100, 100, 50 (final)
	rand.Read(pt)
	a := mustSeal(t, key, seg, pt)
	b := mustSeal(t, key, seg, pt) // same plaintext, same key, another object id
	slot := seg + Overhead
	segAt := func(s []byte, i int) []byte {
		start := HeaderSize + i*slot
		return s[start:min(start+slot, len(s))]
	}
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	flip := func(off int) []byte { c := bytes.Clone(a); c[off] ^= 0x01; return c }

	cases := []struct {
		name   string
		sealed []byte
		key    []byte
		want   error
	}{
		{"flip magic", flip(0), key, ErrFormat},
		{"flip version", flip(6), key, ErrFormat},
		{"flip generation", flip(11), key, nil}, // no key for generation 0
		{"flip segment size", flip(15), key, ErrAuth},
		{"flip object id", flip(20), key, ErrAuth},
		{"flip nonce", flip(HeaderSize + 3), key, ErrAuth},
		{"flip ciphertext", flip(HeaderSize + 40), key, ErrAuth},
		{"flip tag", flip(HeaderSize + slot - 1), key, ErrAuth},
		{"flip last byte", flip(len(a) - 1), key, ErrAuth},
		{"truncate final segment", a[:HeaderSize+3*slot], key, ErrAuth},
		{"truncate one byte", a[:len(a)-1], key, ErrAuth},
		{"truncate into header", a[:HeaderSize-1], key, ErrFormat},
		{"header only", a[:HeaderSize], key, ErrAuth},
		{"drop middle segment", join(a[:HeaderSize], segAt(a, 0), segAt(a, 2), segAt(a, 3)), key, ErrAuth},
		{"swap segments", join(a[:HeaderSize], segAt(a, 1), segAt(a, 0), segAt(a, 2), segAt(a, 3)), key, ErrAuth},
		{"duplicate segment", join(a[:HeaderSize], segAt(a, 0), segAt(a, 0), segAt(a, 2), segAt(a, 3)), key, ErrAuth},
		{"splice segment from another object", join(a[:HeaderSize], segAt(a, 0), segAt(b, 1), segAt(a, 2), segAt(a, 3)), key, ErrAuth},
		{"header of another object", join(b[:HeaderSize], a[HeaderSize:]), key, ErrAuth},
		{"append a segment", join(a, segAt(a, 1)), key, ErrAuth},
		{"append garbage", join(a, []byte("x")), key, ErrAuth},
		{"wrong key", a, testKey(2), ErrAuth},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Open(c.sealed, keyOf(c.key))
			if err == nil {
				t.Fatalf("Open accepted a tampered object (%d bytes out)", len(got))
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
	if got, err := Open(a, keyOf(key)); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("untouched object: %v", err)
	}
}

func TestParseHeaderRejects(t *testing.T) {
	good := Header{Generation: 3, SegmentSize: 64 << 10}.Marshal()
	if _, err := ParseHeader(good); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func([]byte){
		"flags":            func(b []byte) { b[7] = 1 },
		"zero segment":     func(b []byte) { copy(b[12:16], []byte{0, 0, 0, 0}) },
		"huge segment":     func(b []byte) { copy(b[12:16], []byte{0xff, 0, 0, 0}) },
		"future version":   func(b []byte) { b[6] = 3 },
		"version zero":     func(b []byte) { b[6] = 0 },
		"foreign magic":    func(b []byte) { copy(b, "GIF89a") },
		"everything zeros": func(b []byte) { clear(b) },
	} {
		b := bytes.Clone(good)
		mutate(b)
		if _, err := ParseHeader(b); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", name, err)
		}
	}
}

func FuzzOpen(f *testing.F) {
	// The root key of the test vectors, so the seed corpus (vectors and their damaged
	// copies, testdata/fuzz/FuzzOpen) reaches the decryption paths.
	key := make([]byte, KeySize)
	for i := range key {
		key[i] = byte(i)
	}
	anyGen := func(uint32) ([]byte, error) { return key, nil }
	for _, n := range []int{0, 5, 16, 40} {
		pt := bytes.Repeat([]byte("coffer"), n)[:n]
		s, err := Seal(bytes.NewReader(bytes.Repeat([]byte{0x5a}, 1<<10)), key, 1, 16, pt)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pt, err := Open(data, anyGen)
		if err != nil {
			if pt != nil {
				t.Fatal("Open returned plaintext with an error")
			}
			return
		}
		// Whatever opens must have the size its header and length announce.
		h, herr := ParseHeader(data)
		if herr != nil {
			t.Fatalf("opened an object whose header does not parse: %v", herr)
		}
		size, serr := h.PlainSize(int64(len(data)))
		if serr != nil || size != int64(len(pt)) {
			t.Fatalf("PlainSize = %d, %v; opened %d bytes", size, serr, len(pt))
		}
	})
}

type staticKeys struct{ root []byte }

func (k staticKeys) CurrentKey(ctx context.Context) (uint32, []byte, error) { return 1, k.root, nil }
func (k staticKeys) Key(ctx context.Context, gen uint32) ([]byte, error)    { return k.root, nil }

// FuzzOpenTail feeds the resume-state decoder arbitrary records: it must never panic, and
// what it accepts must be shorter than a segment.
func FuzzOpenTail(f *testing.F) {
	key := make([]byte, KeySize)
	for i := range key {
		key[i] = byte(i)
	}
	d := &Driver{keys: staticKeys{key}, rand: bytes.NewReader(bytes.Repeat([]byte{7}, 1<<12)), segmentSize: 16}
	h := Header{Generation: 1, SegmentSize: 16}
	c, err := newObjectCipher(key, h)
	if err != nil {
		f.Fatal(err)
	}
	for _, tail := range []string{"", "partial", "fifteen bytes!!"} {
		const index = 3
		rec := append([]byte(nil), c.header...)
		rec = binary.BigEndian.AppendUint64(rec, index)
		rec = c.sealSegment(rec, index, kindTail, bytes.Repeat([]byte{9}, NonceSize), []byte(tail))
		f.Add(rec)
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		h, _, tail, _, err := d.openTail(context.Background(), rec)
		if err == nil && len(tail) >= int(h.SegmentSize) {
			t.Fatalf("accepted a tail of %d bytes with segment size %d", len(tail), h.SegmentSize)
		}
	})
}
