package bench

import (
	"encoding/json"
	"reflect"
	"testing"
)

// The fast path must agree with a full decode on every shape it accepts.
func TestParseChunkAgreesWithJSON(t *testing.T) {
	for _, in := range []string{
		`{"id":"c","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" hi","logprobs":null,"finish_reason":null}],"usage":null}`,
		`{"id":"c","choices":[{"index":0,"text":" hi"}]}`,
		`{"id":"c","choices" : [ ],"usage":{"prompt_tokens":200,"completion_tokens":200,"total_tokens":400}}`,
		`{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`,
		`{"id":"c","choices": [ {"delta":{"role":"assistant","content":""}} ]}`,
		`{"id":"c","choices":[{"text":"error"}]}`,
		`{"id":"c","choices":[{"text":"\"choices\":[]"}]}`,
		`{"error":{"message":"engine died","type":"InternalServerError","param":null,"code":500}}`,
		`{"id":"c"}`,
		`{"choices":null}`,
	} {
		var fast, full chunk
		errFast := parseChunk([]byte(in), &fast)
		errFull := json.Unmarshal([]byte(in), &full)
		if (errFast == nil) != (errFull == nil) {
			t.Errorf("%s: errors differ: %v vs %v", in, errFast, errFull)
			continue
		}
		if (len(fast.Choices) > 0) != (len(full.Choices) > 0) || fast.isError() != full.isError() || !reflect.DeepEqual(fast.Usage, full.Usage) {
			t.Errorf("%s: fast %+v, full %+v", in, fast, full)
		}
	}
	var c chunk
	if err := parseChunk([]byte(`{"choices":[`), &c); err == nil {
		t.Error("truncated JSON accepted")
	}
}
