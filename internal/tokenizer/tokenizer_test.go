package tokenizer

import (
	"os"
	"strings"
	"testing"
)

func TestCount(t *testing.T) {
	cases := []struct {
		in   string
		want int
	}{
		{"", 0},
		{"hello", 1},
		{"hello world", 2},
		{" hello", 1},                     // a leading space joins the word
		{"  hello", 2},                    // extra spaces are a token of their own
		{"internationalization", 3},       // 20 letters: pieces of 8
		{"p95 = 5.2s", 10},                // p, 9, 5, " ", =, " ", 5, ., 2, s
		{"a,b.", 4},                       // punctuation one byte each
		{"line\n\nnext", 3},               // a run of newlines is one token
		{"<|im_start|>user\n", 3},         // special marker, word, newline
		{"<|not special", 4},              // '<', '|', word, word
		{"héllo", 1},                      // non-ASCII bytes count as letters
		{strings.Repeat("ab ", 100), 101}, // 100 words and the trailing space
	}
	for _, c := range cases {
		if got := Count(c.in); got != c.want {
			t.Errorf("Count(%q) = %d, want %d", c.in, got, c.want)
		}
		if got := len(Encode(c.in)); got != c.want {
			t.Errorf("len(Encode(%q)) = %d, want %d", c.in, got, c.want)
		}
		if got := strings.Join(Pieces(c.in), ""); got != c.in {
			t.Errorf("pieces of %q join to %q", c.in, got)
		}
	}
}

func TestPromptFileCountsAbout200(t *testing.T) {
	b, err := os.ReadFile("../../configs/prompts/prompt_200.txt")
	if err != nil {
		t.Fatal(err)
	}
	// Documented in Count; a change here changes every experiment.
	if n := Count(string(b)); n != 205 {
		t.Fatalf("prompt_200.txt counts %d tokens, documented 205", n)
	}
}

func TestRenderChat(t *testing.T) {
	got := RenderChat([]ChatTurn{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}})
	want := "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
	if got != want {
		t.Fatalf("got %q", got)
	}
}

func TestIDsRoundTripForBytesAndOutputPieces(t *testing.T) {
	for _, s := range []string{" latency, queue.", "a,b.\n", "p95 = 5.2s", "GPU step"} {
		ids := Encode(s)
		if got := Decode(ids); got != s {
			t.Errorf("Decode(Encode(%q)) = %q (ids %v)", s, got, ids)
		}
		for _, id := range ids {
			if id < 0 || id >= IDSpace {
				t.Errorf("id %d of %q outside [0, %d)", id, s, IDSpace)
			}
		}
	}
	for id := pieceBase; id < hashBase; id++ {
		p, ok := Piece(id)
		if !ok || ID(p) != id {
			t.Fatalf("piece %d = %q, ID back %d", id, p, ID(p))
		}
	}
	// A hashed piece decodes to a marker that counts as one token.
	ids := Encode(" internat")
	if len(ids) != 1 || ids[0] < hashBase {
		t.Fatalf("ids %v", ids)
	}
	if txt := Decode(ids); Count(txt) != 1 || !strings.HasPrefix(txt, "<|id_") {
		t.Fatalf("stand-in %q", txt)
	}
}

func BenchmarkCount(b *testing.B) {
	s := strings.Repeat("The quick brown fox jumps over 13 lazy dogs.\n", 20)
	for b.Loop() {
		Count(s)
	}
}
