package resp

import "testing"

func TestAppendRESP3(t *testing.T) {
	for _, c := range []struct {
		name  string
		shape Shape
		in    string
		want  string
	}{
		{"nil bulk", ShapePlain, "$-1\r\n", "_\r\n"},
		{"nil array", ShapeMap, "*-1\r\n", "_\r\n"},
		{"nested nil", ShapePlain, "*2\r\n$1\r\na\r\n$-1\r\n", "*2\r\n$1\r\na\r\n_\r\n"},
		{"error unchanged", ShapeMap, "-ERR x\r\n", "-ERR x\r\n"},
		{"map", ShapeMap, "*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$-1\r\n", "%2\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n_\r\n"},
		{"odd map stays array", ShapeMap, "*1\r\n$1\r\na\r\n", "*1\r\n$1\r\na\r\n"},
		{"set", ShapeSet, "*2\r\n$1\r\na\r\n$1\r\nb\r\n", "~2\r\n$1\r\na\r\n$1\r\nb\r\n"},
		{"double", ShapeDouble, "$3\r\n1.5\r\n", ",1.5\r\n"},
		{"double inf", ShapeDouble, "$4\r\n-inf\r\n", ",-inf\r\n"},
		{"not a double", ShapeDouble, "$1\r\nx\r\n", "$1\r\nx\r\n"},
		{"doubles", ShapeDoubles, "*2\r\n$1\r\n1\r\n$-1\r\n", "*2\r\n,1\r\n_\r\n"},
		{"score pairs", ShapeScorePairs, "*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n",
			"*2\r\n*2\r\n$1\r\na\r\n,1\r\n*2\r\n$1\r\nb\r\n,2\r\n"},
		{"pairs", ShapePairs, "*2\r\n$1\r\nf\r\n$1\r\nv\r\n", "*1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"},
		{"last double", ShapeLastDouble, "*3\r\n$1\r\nk\r\n$1\r\nm\r\n$1\r\n2\r\n", "*3\r\n$1\r\nk\r\n$1\r\nm\r\n,2\r\n"},
		{"maps", ShapeMaps, "*1\r\n*2\r\n$4\r\nname\r\n$1\r\ng\r\n", "*1\r\n%1\r\n$4\r\nname\r\n$1\r\ng\r\n"},
		{"streams", ShapeStreams, "*1\r\n*2\r\n$1\r\ns\r\n*0\r\n", "%1\r\n$1\r\ns\r\n*0\r\n"},
		{"key score pairs", ShapeKeyScorePairs, "*2\r\n$1\r\nk\r\n*1\r\n*2\r\n$1\r\nm\r\n$1\r\n2\r\n",
			"*2\r\n$1\r\nk\r\n*1\r\n*2\r\n$1\r\nm\r\n,2\r\n"},
		{"double arrays", ShapeDoubleArrays, "*2\r\n*2\r\n$1\r\n1\r\n$1\r\n2\r\n*-1\r\n", "*2\r\n*2\r\n,1\r\n,2\r\n_\r\n"},
		{"geo coords", ShapeGeoCoords, "*1\r\n*3\r\n$1\r\nm\r\n$3\r\n1.5\r\n*2\r\n$1\r\n1\r\n$1\r\n2\r\n",
			"*1\r\n*3\r\n$1\r\nm\r\n$3\r\n1.5\r\n*2\r\n,1\r\n,2\r\n"},
		{"geo members only", ShapeGeoCoords, "*1\r\n$1\r\nm\r\n", "*1\r\n$1\r\nm\r\n"},
		{"stream full", ShapeStreamFull,
			"*4\r\n$6\r\nlength\r\n:1\r\n$6\r\ngroups\r\n*1\r\n*4\r\n$4\r\nname\r\n$1\r\ng\r\n$9\r\nconsumers\r\n*1\r\n*2\r\n$4\r\nname\r\n$1\r\nc\r\n",
			"%2\r\n$6\r\nlength\r\n:1\r\n$6\r\ngroups\r\n*1\r\n%2\r\n$4\r\nname\r\n$1\r\ng\r\n$9\r\nconsumers\r\n*1\r\n%1\r\n$4\r\nname\r\n$1\r\nc\r\n"},
		{"shards", ShapeShards, "*1\r\n*4\r\n$5\r\nslots\r\n*0\r\n$5\r\nnodes\r\n*1\r\n*2\r\n$2\r\nid\r\n$1\r\nx\r\n",
			"*1\r\n%2\r\n$5\r\nslots\r\n*0\r\n$5\r\nnodes\r\n*1\r\n%1\r\n$2\r\nid\r\n$1\r\nx\r\n"},
		{"command info", ShapeCommandInfo,
			"*2\r\n*-1\r\n*10\r\n$1\r\nc\r\n:-2\r\n*1\r\n+write\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n*0\r\n" +
				"*1\r\n*10\r\n$3\r\nc|s\r\n:2\r\n*0\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n*0\r\n*0\r\n",
			"*2\r\n_\r\n*10\r\n$1\r\nc\r\n:-2\r\n~1\r\n+write\r\n:0\r\n:0\r\n:0\r\n~0\r\n~0\r\n~0\r\n" +
				"*1\r\n*10\r\n$3\r\nc|s\r\n:2\r\n~0\r\n:0\r\n:0\r\n:0\r\n~0\r\n~0\r\n~0\r\n~0\r\n"},
		{"map of maps", ShapeMapOfMaps, "*2\r\n$1\r\nc\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n",
			"%1\r\n$1\r\nc\r\n%1\r\n$1\r\na\r\n$1\r\nb\r\n"},
		{"verbatim", ShapeVerbatim, "$2\r\nab\r\n", "=6\r\ntxt:ab\r\n"},
		{"malformed unchanged", ShapeMap, "*2\r\n$1\r\na\r\n", "*2\r\n$1\r\na\r\n"},
	} {
		if got := string(AppendRESP3([]byte("x"), []byte(c.in), c.shape)); got != "x"+c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, "x"+c.want)
		}
	}
}

// FuzzAppendRESP3: any bytes and shape convert without panicking, and a
// conversion consumes exactly the input or leaves it unchanged.
func FuzzAppendRESP3(f *testing.F) {
	f.Add([]byte("*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$-1\r\n"), uint8(ShapeMap))
	f.Add([]byte("*1\r\n*2\r\n$1\r\ns\r\n*0\r\n"), uint8(ShapeStreams))
	f.Add([]byte("$3\r\n1.5\r\n"), uint8(ShapeDouble))
	f.Add([]byte("*1\r\n*10\r\n$1\r\nc\r\n:1\r\n*0\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n*0\r\n*0\r\n"), uint8(ShapeCommandInfo))
	f.Add([]byte("*3\r\n$1\r\nk\r\n$1\r\nm\r\n$1\r\n2\r\n"), uint8(ShapeLastDouble))
	f.Add([]byte("*1\r\n*2\r\n$1\r\nm\r\n*2\r\n$1\r\n1\r\n$1\r\n2\r\n"), uint8(ShapeGeoCoords))
	f.Add([]byte("*4\r\n$6\r\ngroups\r\n*1\r\n*2\r\n$9\r\nconsumers\r\n*0\r\n$1\r\nx\r\n:1\r\n"), uint8(ShapeStreamFull))
	f.Add([]byte("*1\r\n*2\r\n$5\r\nnodes\r\n*1\r\n*2\r\n$2\r\nid\r\n$1\r\nx\r\n"), uint8(ShapeShards))
	f.Fuzz(func(t *testing.T, reply []byte, shape uint8) {
		out := AppendRESP3(nil, reply, Shape(shape)%(ShapeVerbatim+1))
		if len(reply) > 0 && len(out) == 0 {
			t.Fatalf("reply %q lost", reply)
		}
	})
}

func TestAppendRESP3Elements(t *testing.T) {
	shapes := []Shape{ShapeMap, ShapeDouble, ShapeSet, ShapePlain}
	for _, c := range []struct {
		name, in, want string
	}{
		{"each in its shape", "*4\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n$3\r\n1.5\r\n*1\r\n$1\r\n1\r\n$-1\r\n",
			"*4\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n,1.5\r\n~1\r\n$1\r\n1\r\n_\r\n"},
		{"errors stay errors", "*4\r\n-WRONGTYPE x\r\n-ERR y\r\n*-1\r\n:1\r\n",
			"*4\r\n-WRONGTYPE x\r\n-ERR y\r\n_\r\n:1\r\n"},
		{"nil array", "*-1\r\n", "_\r\n"},
		{"whole error", "-EXECABORT x\r\n", "-EXECABORT x\r\n"},
		{"other length plain", "*1\r\n$-1\r\n", "*1\r\n_\r\n"},
		{"malformed unchanged", "*4\r\n:1\r\n", "*4\r\n:1\r\n"},
	} {
		if got := string(AppendRESP3Elements([]byte("x"), []byte(c.in), shapes)); got != "x"+c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, "x"+c.want)
		}
	}
}

// FuzzAppendRESP3Elements: any bytes and shapes convert without panicking,
// and no reply is lost.
func FuzzAppendRESP3Elements(f *testing.F) {
	f.Add([]byte("*2\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n$3\r\n1.5\r\n"), []byte{uint8(ShapeMap), uint8(ShapeDouble)})
	f.Add([]byte("*2\r\n-ERR x\r\n*-1\r\n"), []byte{uint8(ShapeSet), uint8(ShapeStreams)})
	f.Add([]byte("*-1\r\n"), []byte{})
	f.Fuzz(func(t *testing.T, reply, shapeBytes []byte) {
		shapes := make([]Shape, len(shapeBytes))
		for i, b := range shapeBytes {
			shapes[i] = Shape(b) % (ShapeVerbatim + 1)
		}
		if out := AppendRESP3Elements(nil, reply, shapes); len(reply) > 0 && len(out) == 0 {
			t.Fatalf("reply %q lost", reply)
		}
	})
}

func TestAppendPushes(t *testing.T) {
	in := "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n-ERR x\r\n"
	want := ">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n>3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n-ERR x\r\n"
	if got := string(AppendPushes(nil, []byte(in))); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// FuzzAppendPushes: any bytes convert without panicking, none is lost.
func FuzzAppendPushes(f *testing.F) {
	f.Add([]byte("*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"))
	f.Add([]byte("+PONG\r\n"))
	f.Fuzz(func(t *testing.T, frames []byte) {
		if out := AppendPushes(nil, frames); len(out) == 0 && len(frames) > 0 {
			t.Fatalf("frames %q lost", frames)
		}
	})
}
