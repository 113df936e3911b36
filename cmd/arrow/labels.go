package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/arrowsys/arrow/api"
)

// labelsFlag adds --label KEY=value (repeatable) to cmd, as docker's
// network create and volume create take it, and returns what parses it.
func labelsFlag(cmd *cobra.Command, what string) func() (map[string]string, error) {
	var list []string
	cmd.Flags().StringArrayVarP(&list, "label", "l", nil, "set a label KEY=value on the "+what+" (repeatable)")
	return func() (map[string]string, error) { return parseLabels(list) }
}

// parseLabels reads KEY=value pairs (a bare KEY has an empty value, as in
// docker); a later KEY wins.
func parseLabels(list []string) (map[string]string, error) {
	if len(list) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(list))
	for _, l := range list {
		k, v, _ := strings.Cut(l, "=")
		out[k] = v
	}
	if err := api.ValidateLabels(out); err != nil {
		return nil, fmt.Errorf("--label: %w", err)
	}
	return out, nil
}
