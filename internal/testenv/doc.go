// Package testenv is the test environment of ironblade's end-to-end tests:
// the namespaces, veth pairs and bridges of package netlab made for one
// test and removed in its t.Cleanup, the binaries under test built once
// per test binary, the processes they run as, and waits on conditions.
//
// Like net/http/httptest beside net/http, aoe/aoetest keeps only AoE test
// doubles (an in-memory hub, a scriptable client, memory disks); what a
// test needs of this machine is here. Every helper skips its test with a
// message naming what is missing (root, a program, a kernel feature) and
// fails it, showing the output, when a command fails.
package testenv
