package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// maxJSONDepth bounds nesting in JSON input (yaml.v3 has its own bound).
const maxJSONDepth = 1000

// decodeNode turns a spec file's bytes into its top-level node: nil when
// the file holds nothing. JSON input (a document starting with '{') is
// read with encoding/json, so that JSON means exactly what JSON means and
// errors point at the right place; everything else, and JSON-like input
// that is not JSON, is YAML. A leading byte order mark is ignored.
func decodeNode(data []byte, file string) (*yaml.Node, *Error) {
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	if line, col, err := checkText(data); err != nil {
		return nil, &Error{File: file, Line: line, Column: col, Err: err}
	}
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '{' {
		n, jerr := decodeJSON(data, file)
		if jerr == nil {
			return n, nil
		}
		if n, yerr := decodeYAML(data, file); yerr == nil {
			return n, nil
		}
		return nil, jerr
	}
	return decodeYAML(data, file)
}

// checkText accepts UTF-8 text of YAML's printable characters, and says
// where the first other character is: yaml.v3's errors for them carry no
// line. It also refuses the line breaks YAML knows and editors may not
// (U+0085, U+2028, U+2029), so that lines are counted alike everywhere.
func checkText(data []byte) (line, col int, err error) {
	var pos position
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			line, col = pos.at(data, i)
			return line, col, fmt.Errorf("invalid UTF-8 (byte 0x%02x)", data[i])
		case r == '\t' || r == '\n' || r == '\r' || r >= 0x20 && r <= 0x7e ||
			r >= 0xa0 && r <= 0xd7ff && r != 0x2028 && r != 0x2029 || r >= 0xe000 && r <= 0xfffd || r >= 0x10000:
		default:
			line, col = pos.at(data, i)
			return line, col, fmt.Errorf("character U+%04X is not allowed (use an escape in a double-quoted string)", r)
		}
		i += size
	}
	return 0, 0, nil
}

// lastLine is the number of the last line of data (which may be empty).
func lastLine(data []byte) int {
	var pos position
	line, _ := pos.at(data, len(data))
	return line
}

// decodeYAML reads the single YAML document in data.
func decodeYAML(data []byte, file string) (root *yaml.Node, perr *Error) {
	defer func() {
		// yaml.v3 turns its own failures into errors; anything else is a
		// bug in it, which untrusted input must not turn into a crash.
		if r := recover(); r != nil {
			root, perr = nil, &Error{File: file, Line: 1, Err: fmt.Errorf("invalid YAML: the parser failed: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, yamlError(err, data, file)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, yamlError(err, data, file)
	case len(next.Content) > 0 && next.Content[0].ShortTag() != "!!null":
		return nil, &Error{File: file, Line: next.Content[0].Line, Column: next.Content[0].Column,
			Err: errors.New("a second YAML document: a spec file holds one")}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// isParserError reports whether a yaml.v3 problem comes from its parser
// (as opposed to its scanner): the parser numbers lines from 0.
func isParserError(problem string) bool {
	switch problem {
	case "did not find expected ',' or ']'",
		"did not find expected ',' or '}'",
		"did not find expected '-' indicator",
		"did not find expected <document start>",
		"did not find expected <stream-start>",
		"did not find expected key",
		"did not find expected node content",
		"found duplicate %TAG directive",
		"found duplicate %YAML directive",
		"found incompatible YAML document",
		"found undefined tag handle":
		return true
	}
	return false
}

// yamlError turns a yaml.v3 error ("yaml: line 3: ...") into an *Error
// with a right line: the parser's are 0-based, the scanner's 1-based, and
// an error on the first line has none.
func yamlError(err error, data []byte, file string) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if n, perr := strconv.Atoi(num); perr == nil && n > 0 {
				line, msg = n, text
				if isParserError(text) {
					line++
				}
			}
		}
	}
	if name, ok := strings.CutPrefix(msg, "unknown anchor '"); ok {
		name, _, _ = strings.Cut(name, "' referenced")
		if i := bytes.Index(data, []byte("*"+name)); i >= 0 {
			var pos position
			line, _ = pos.at(data, i)
		}
	}
	// The end of the stream is on a line of its own for yaml.v3, past
	// the end of a file that does not end with a line break.
	line = min(line, lastLine(data))
	return &Error{File: file, Line: line, Err: &textError{msg: "invalid YAML: " + msg, err: err}}
}

// decodeJSON reads the single JSON object in data into nodes, with the
// lines and columns yaml.v3 would give them.
func decodeJSON(data []byte, file string) (*yaml.Node, *Error) {
	j := &jsonReader{data: data, file: file, dec: json.NewDecoder(bytes.NewReader(data))}
	j.dec.UseNumber()
	tok, line, col, err := j.next()
	if err != nil {
		return nil, j.fail(err)
	}
	n, perr := j.value(tok, line, col, 0)
	if perr != nil {
		return nil, perr
	}
	switch _, line, col, err := j.next(); {
	case err == nil:
		return nil, &Error{File: file, Line: line, Column: col, Err: errors.New("invalid JSON: data after the top-level value")}
	case !errors.Is(err, io.EOF):
		return nil, j.fail(err)
	}
	return n, nil
}

// jsonReader builds nodes from encoding/json's tokens.
type jsonReader struct {
	data []byte
	file string
	dec  *json.Decoder
	pos  position
}

// start is the offset where the next token starts (or where reading it
// failed): the decoder's offset past separators and white space. The
// offsets in json.SyntaxError are not reliable in token mode.
func (j *jsonReader) start() int {
	off := int(j.dec.InputOffset())
	for off < len(j.data) {
		switch j.data[off] {
		case ' ', '\t', '\r', '\n', ',', ':':
			off++
			continue
		}
		break
	}
	return off
}

func (j *jsonReader) next() (tok json.Token, line, col int, err error) {
	line, col = j.pos.at(j.data, j.start())
	tok, err = j.dec.Token()
	return tok, line, col, err
}

// fail reports err at the token where reading stopped.
func (j *jsonReader) fail(err error) *Error {
	line, col := j.pos.at(j.data, j.start())
	msg := err.Error()
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		msg = "unexpected end of input"
	}
	return &Error{File: j.file, Line: line, Column: col, Err: &textError{msg: "invalid JSON: " + msg, err: err}}
}

func (j *jsonReader) value(tok json.Token, line, col, depth int) (*yaml.Node, *Error) {
	n := &yaml.Node{Kind: yaml.ScalarNode, Line: line, Column: col}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= maxJSONDepth {
			return nil, &Error{File: j.file, Line: line, Column: col, Err: fmt.Errorf("invalid JSON: nested more than %d deep", maxJSONDepth)}
		}
		n.Style = yaml.FlowStyle
		n.Kind, n.Tag = yaml.SequenceNode, "!!seq"
		if t == '{' {
			n.Kind, n.Tag = yaml.MappingNode, "!!map"
		}
		for j.dec.More() {
			tok, line, col, err := j.next()
			if err != nil {
				return nil, j.fail(err)
			}
			if n.Kind == yaml.MappingNode {
				key, ok := tok.(string)
				if !ok { // encoding/json reports this itself; be safe
					return nil, &Error{File: j.file, Line: line, Column: col, Err: errors.New("invalid JSON: object key is not a string")}
				}
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Style: yaml.DoubleQuotedStyle, Value: key, Line: line, Column: col})
				if tok, line, col, err = j.next(); err != nil {
					return nil, j.fail(err)
				}
			}
			v, perr := j.value(tok, line, col, depth+1)
			if perr != nil {
				return nil, perr
			}
			n.Content = append(n.Content, v)
		}
		if _, _, _, err := j.next(); err != nil { // the closing delimiter
			return nil, j.fail(err)
		}
	case string:
		n.Tag, n.Value, n.Style = "!!str", t, yaml.DoubleQuotedStyle
	case json.Number:
		n.Tag, n.Value = "!!int", string(t)
		if strings.ContainsAny(string(t), ".eE") {
			n.Tag = "!!float"
		}
	case bool:
		n.Tag, n.Value = "!!bool", strconv.FormatBool(t)
	case nil:
		n.Tag, n.Value = "!!null", "null"
	default:
		return nil, &Error{File: j.file, Line: line, Column: col, Err: fmt.Errorf("invalid JSON: unexpected token %v", tok)}
	}
	return n, nil
}

// position turns byte offsets, asked for in increasing order, into
// 1-based lines and columns (in characters) in linear time overall. Lines
// end at LF, CR LF or CR, as in YAML. The zero value is at the start.
type position struct {
	off, line, col int // line and col count from 0
}

func (p *position) at(data []byte, off int) (line, col int) {
	if off < p.off {
		*p = position{}
	}
	off = min(off, len(data))
	for p.off < off {
		r, size := utf8.DecodeRune(data[p.off:])
		p.off += size
		if r == '\n' || r == '\r' && (p.off == len(data) || data[p.off] != '\n') {
			p.line, p.col = p.line+1, 0
		} else {
			p.col++
		}
	}
	return p.line + 1, p.col + 1
}
