package daemon

import (
	"crypto/rand"
	"math/big"
	"strconv"
)

// Names for arrows started without --name: an adjective and an archer or
// a bird, as docker makes up names from adjectives and scientists.
var (
	nameAdjectives = [...]string{"swift", "bright", "calm", "eager", "brave", "keen", "quiet", "steady", "nimble", "bold", "clever", "gentle", "lucid", "proud", "sharp", "silent", "sturdy", "vivid", "wise", "zesty"}
	nameNouns      = [...]string{"falcon", "heron", "kestrel", "osprey", "merlin", "swallow", "swift", "tern", "robin", "finch", "hawk", "kite", "harrier", "wren", "lark", "owl", "egret", "plover", "sparrow", "crane"}
)

func pick(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		return 0
	}
	return int(v.Int64())
}

// randomName returns a name such as "swift_heron_42".
func randomName() string {
	return nameAdjectives[pick(len(nameAdjectives))] + "_" + nameNouns[pick(len(nameNouns))] + "_" + strconv.Itoa(pick(100))
}
