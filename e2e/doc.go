// Package e2e holds Arrow's end-to-end tests: they build the arrow and
// arrow-init binaries, boot real microVMs with Arrow's guest kernel (under
// TCG on hosts without usable hardware virtualization) and check what a
// user sees: output, exit statuses, errors and what is left behind.
//
// The tests need the guest kernel in Arrow's data root ($ARROW_ROOT, or
// /var/lib/arrow as root); `make test` builds it first.
package e2e
