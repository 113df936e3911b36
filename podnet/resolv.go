package podnet

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// maxResolvConf bounds the resolv.conf read: CRI writes it from the pod's
// DNS config, or copies the host's.
const maxResolvConf = 64 << 10

// ReadResolvConf reads the name servers and search domains of a
// resolv.conf, as CRI writes it for a pod (the container's spec mounts it
// at /etc/resolv.conf). Name servers on a loopback address (a host's
// local stub resolver) are left out: the guest's loopback is its own. A
// missing file gives none and no error.
func ReadResolvConf(path string) (dns, search []string, err error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("resolv.conf: %w", err)
	}
	if len(b) > maxResolvConf {
		return nil, nil, fmt.Errorf("resolv.conf %s: %d bytes, want at most %d", path, len(b), maxResolvConf)
	}
	dns, search = parseResolvConf(b)
	return dns, search, nil
}

// parseResolvConf reads nameserver and search (or domain) lines; the last
// search or domain line wins, as in resolv.conf(5).
func parseResolvConf(b []byte) (dns, search []string) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			a, err := netip.ParseAddr(f[1])
			if err != nil || a.Unmap().IsLoopback() || a.IsUnspecified() || a.Zone() != "" {
				continue
			}
			dns = append(dns, a.Unmap().String())
		case "search", "domain":
			search = append([]string(nil), f[1:]...)
		}
	}
	return dns, search
}
