package api

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// validateOpenAPI checks an OpenAPI 3 document with kin-openapi, a full
// validator: the tests in openapi_test.go check that the document agrees
// with the Go types, but only a validator knows what the specification
// allows (no unknown keys in a schema, a response for every operation,
// references that resolve, examples and defaults that fit their schemas).
func validateOpenAPI(ctx context.Context, data []byte) error {
	loader := openapi3.NewLoader()
	// The document is self-contained: a $ref to another file or a URL is
	// an error, not a fetch.
	loader.IsExternalRefsAllowed = false
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return err
	}
	return doc.Validate(ctx,
		openapi3.EnableMultiError(),
		openapi3.EnableSchemaFormatValidation(),
		openapi3.EnableSchemaPatternValidation(),
		openapi3.EnableSchemaDefaultsValidation(),
		openapi3.EnableExamplesValidation(),
	)
}

func TestOpenAPIValid(t *testing.T) {
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := validateOpenAPI(t.Context(), b); err != nil {
		t.Errorf("openapi.yaml: %v", err)
	}
}

// minimalDoc is a valid OpenAPI document with one schema property whose
// line the cases below replace.
const minimalDoc = `openapi: 3.0.3
info: { title: t, version: "1" }
paths:
  /v1/events:
    get:
      responses:
        "200":
          description: The events.
          content:
            application/json:
              schema: { $ref: "#/components/schemas/Event" }
components:
  schemas:
    Event:
      type: object
      properties:
        PROPERTY
`

// brokenDetail is Event.detail as it was: the unquoted comma ends the
// description inside the flow mapping, and "the error of a die." became
// a key of the schema.
const (
	brokenDetail = `detail: { type: string, description: The signal of a kill, the error of a die. }`
	fixedDetail  = `detail: { type: string, description: "The signal of a kill, the error of a die." }`
)

// TestOpenAPIValidatorCatches proves that the validator is not a
// formality: it rejects the bug it was brought in for, and other ways a
// hand-written document goes wrong.
func TestOpenAPIValidatorCatches(t *testing.T) {
	file, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(file), fixedDetail) {
		t.Fatalf("openapi.yaml no longer has %q: update this test's copy of Event.detail", fixedDetail)
	}
	for _, tc := range []struct {
		name string
		doc  string
		want string // in the error; "" for a valid document
	}{
		{"fixed detail", strings.Replace(minimalDoc, "PROPERTY", fixedDetail, 1), ""},
		{"broken detail", strings.Replace(minimalDoc, "PROPERTY", brokenDetail, 1), "extra sibling fields: [the error of a die.]"},
		{"openapi.yaml with the broken detail", strings.Replace(string(file), fixedDetail, brokenDetail, 1), "extra sibling fields: [the error of a die.]"},
		{"unknown type", strings.Replace(minimalDoc, "PROPERTY", `detail: { type: text }`, 1), `unsupported 'type' value "text"`},
		{"dangling ref", strings.Replace(minimalDoc, "PROPERTY", `detail: { $ref: "#/components/schemas/Nothing" }`, 1), `"Nothing" not found`},
		{"example off its schema", strings.Replace(minimalDoc, "PROPERTY", `exit_code: { type: integer, example: "one" }`, 1), "invalid example"},
		{"default off its enum", strings.Replace(minimalDoc, "PROPERTY", `type: { type: string, enum: [create, die], default: born }`, 1), "invalid default"},
		{"pattern that is no regexp", strings.Replace(minimalDoc, "PROPERTY", `name: { type: string, pattern: "([a-z" }`, 1), "parsing regexp"},
		{"operation without responses", strings.Replace(strings.Replace(minimalDoc, "PROPERTY", fixedDetail, 1),
			`      responses:
        "200":
          description: The events.
          content:
            application/json:
              schema: { $ref: "#/components/schemas/Event" }
`, "      summary: No responses.\n", 1), "responses must be an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validateOpenAPI(t.Context(), []byte(tc.doc))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("valid document refused: %v", err)
			case tc.want != "" && err == nil:
				t.Errorf("invalid document accepted; want an error about %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}
