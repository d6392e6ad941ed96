package validate

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/llmlab/llmlab/internal/openai"
)

// benchBody is a body as `llmlab bench` sends it (internal/bench's
// bodyBuilder: the marshalled CompletionRequest with a token-id prompt).
const benchBody = `{"model":"Qwen/Qwen2.5-0.5B-Instruct","prompt":[1000,20345,7,30999],"max_tokens":200,"temperature":0,"stream":true,"stream_options":{"include_usage":true},"ignore_eos":true}`

// fastCases are bodies for the fast completions decoder: handled says
// whether it must decode them itself (the common shapes: a regression
// there is a silent slowdown), and every one is checked against
// encoding/json.
var fastCases = []struct {
	name    string
	body    string
	handled bool
}{
	{"bench tokens", benchBody, true},
	{"bench text", `{"model":"m","prompt":"Once upon a time","max_tokens":16,"temperature":0.7,"stream":false,"ignore_eos":true}`, true},
	{"sdk fields", `{"model":"m","prompt":"hi","max_tokens":5,"top_p":0.95,"n":1,"seed":-42,"user":"u","logprobs":2,"min_tokens":1,"stop":["\n\n","</s>"]}`, true},
	{"vllm sampling", `{"prompt":[1],"presence_penalty":-1.5,"frequency_penalty":2e-1,"repetition_penalty":1.1,"top_k":-1,"min_p":0.05}`, true},
	{"empty object", `{}`, true},
	{"whitespace everywhere", " \t\r\n{ \"prompt\" :\n[ 1 ,2\t, -3 ] , \"stop\" : [ \"a\" , \"b\\u00e9\" ] ,\"stream_options\" : { } } \n", true},
	{"nulls", `{"model":null,"prompt":null,"max_tokens":null,"temperature":null,"stream":null,"stream_options":null,"seed":null}`, true},
	{"stop null", `{"prompt":"x","stop":null}`, true},
	{"stop string escapes", `{"prompt":"x","stop":"a\"\\\/\b\f\n\r\t\u12aFz"}`, true},
	{"stop empty list", `{"prompt":"x","stop":[]}`, true},
	{"int64 extremes", `{"seed":-9223372036854775808,"max_tokens":9223372036854775807,"prompt":[-9223372036854775808,9223372036854775807,-0]}`, true},
	{"float forms", `{"temperature":-0,"top_p":1E+2,"min_p":0.5e-3,"presence_penalty":1e400}`, false},
	{"utf8 model", `{"model":"modèle-é","prompt":"日本"}`, true},
	{"stream options both", `{"stream":true,"stream_options":{"continuous_usage_stats":false,"include_usage":true}}`, true},

	{"stop token ids", `{"prompt":[1],"stop_token_ids":[151643, 151645]}`, true},
	{"stop token ids null", `{"prompt":[1],"stop_token_ids":null}`, true},
	{"stop token ids empty", `{"prompt":[1],"stop_token_ids":[]}`, false},
	{"text prompt escapes", `{"prompt":"line\none \"q\" \\ \/ \b\f\r\t \u00e9\u4e2D end","user":"a\u0000b"}`, true},
	{"surrogate pair", `{"prompt":"\ud83d\ude00!"}`, true},
	{"lone high surrogate", `{"prompt":"\ud800x"}`, true},
	{"high then non-low", `{"prompt":"\ud800\u0041"}`, true},
	{"low then high", `{"prompt":"\udc00\ud800"}`, true},
	{"high high low", `{"prompt":"\ud800\ud800\udc00"}`, true},
	{"surrogate at end", `{"prompt":"\ud800"}`, true},
	{"escape then utf8", `{"prompt":"\n日本"}`, true},
	{"escape then invalid utf8", "{\"prompt\":\"\\n\xc3\"}", false},
	{"apostrophe escape", `{"prompt":"\'"}`, false},
	{"bad unicode escape", `{"prompt":"\u12G4"}`, false},
	{"escaped control char raw", "{\"prompt\":\"\\n\x1f\"}", false},

	{"upper-case key", `{"MAX_TOKENS":5}`, false},
	{"mixed-case key", `{"Prompt":"x"}`, false},
	{"kelvin fold", "{\"top_\u212a\":3}", false},
	{"duplicate key", `{"max_tokens":5,"max_tokens":6}`, false},
	{"duplicate inner", `{"stream_options":{"include_usage":true,"include_usage":false}}`, false},
	{"unknown key", `{"prompt":"x","logit_bias":{"7":1.5}}`, false},
	{"escaped key", `{"pr\u006fmpt":"x"}`, false},
	{"invalid utf8 prompt", "{\"prompt\":\"a\xffb\"}", false},
	{"control char", "{\"prompt\":\"a\x01b\"}", false},
	{"prompt list of strings", `{"prompt":["a","b"]}`, false},
	{"prompt nested lists", `{"prompt":[[1,2],[3]]}`, false},
	{"prompt empty list", `{"prompt":[]}`, false},
	{"prompt null id", `{"prompt":[1,null]}`, false},
	{"prompt float id", `{"prompt":[1.0]}`, false},
	{"prompt huge id", `{"prompt":[9223372036854775808]}`, false},
	{"int fraction", `{"max_tokens":1.5}`, false},
	{"int exponent", `{"max_tokens":1e2}`, false},
	{"int leading zero", `{"max_tokens":01}`, false},
	{"int overflow", `{"max_tokens":99999999999999999999}`, false},
	{"int quoted", `{"max_tokens":"5"}`, false},
	{"float hex", `{"temperature":0x1}`, false},
	{"float inf", `{"temperature":Infinity}`, false},
	{"float dot", `{"temperature":1.}`, false},
	{"bool as int", `{"stream":1}`, false},
	{"literal run-on", `{"stream":truex}`, false},
	{"stop number", `{"stop":3}`, false},
	{"stop bad escape", `{"stop":"\x"}`, false},
	{"stop short unicode", `{"stop":"\u12"}`, false},
	{"trailing garbage", `{"prompt":"x"}x`, false},
	{"two objects", `{}{}`, false},
	{"trailing comma", `{"prompt":"x",}`, false},
	{"truncated", `{"prompt":[1,2`, false},
	{"not an object", `[1]`, false},
	{"empty", ``, false},
	{"bom", "\ufeff{}", false},
}

func TestDecodeCompletionFast(t *testing.T) {
	for _, c := range fastCases {
		var got openai.CompletionRequest
		ok := openai.DecodeCompletion([]byte(c.body), &got)
		if ok != c.handled {
			t.Errorf("%s: handled %v, want %v", c.name, ok, c.handled)
		}
		checkFast(t, []byte(c.body), got, ok)
	}
}

// The fast path is wired into Completion: a bench body and the same body
// with a key spelt otherwise (the general decoders) validate alike.
func TestCompletionFastAndGeneral(t *testing.T) {
	fast, e := Completion([]byte(benchBody), Limits{ServedName: "Qwen/Qwen2.5-0.5B-Instruct", MaxModelLen: 512, Vocab: 151936})
	if e != nil {
		t.Fatal(e.Error.Message)
	}
	general, e := Completion([]byte(strings.Replace(benchBody, `"max_tokens"`, `"Max_Tokens"`, 1)), Limits{ServedName: "Qwen/Qwen2.5-0.5B-Instruct", MaxModelLen: 512, Vocab: 151936})
	if e != nil {
		t.Fatal(e.Error.Message)
	}
	if !reflect.DeepEqual(fast, general) || fast.MaxTokens != 200 || !fast.IncludeUsage || fast.PromptTokens != 4 {
		t.Fatalf("fast %+v, general %+v", fast, general)
	}
}

// decode refuses invalid UTF-8 before the fast path, which (as
// encoding/json does) keeps stop's raw bytes unchecked.
func TestFastPathAfterUTF8Check(t *testing.T) {
	body := []byte("{\"prompt\":\"hi\",\"stop\":\"\xff\"}")
	var req openai.CompletionRequest
	if !openai.DecodeCompletion(body, &req) {
		t.Fatal("stop with invalid UTF-8 not handled: this test no longer tests the ordering")
	}
	_, e := Completion(body, lim)
	if e == nil || !strings.Contains(e.Error.Message, "not valid UTF-8") {
		t.Fatalf("got %+v, want the UTF-8 refusal", e)
	}
}

// checkFast holds one DecodeCompletion result to encoding/json: a body it
// handles, encoding/json accepts with the same request.
func checkFast(t *testing.T, body []byte, got openai.CompletionRequest, ok bool) {
	t.Helper()
	if !ok {
		if !reflect.DeepEqual(got, openai.CompletionRequest{}) {
			t.Fatalf("%q: not handled but returned %+v", body, got)
		}
		return
	}
	var want openai.CompletionRequest
	if err := json.Unmarshal(body, &want); err != nil {
		t.Fatalf("%q: fast decoder accepted it, encoding/json: %v", body, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: fast decoder %+v, encoding/json %+v", body, got, want)
	}
}

// FuzzCompletionFast holds openai.DecodeCompletion to encoding/json on any
// body: what it handles, encoding/json accepts, with the same request.
func FuzzCompletionFast(f *testing.F) {
	for _, c := range fastCases {
		f.Add([]byte(c.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var got openai.CompletionRequest
		ok := openai.DecodeCompletion(body, &got)
		checkFast(t, body, got, ok)
	})
}
