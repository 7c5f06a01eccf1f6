// Package privatebus writes the configuration of a private dbus-daemon that behaves like the
// system bus: system.conf's default policy (deny owning names and method calls unless
// allowed) plus policy files of our choosing (the project's dbus/*.conf) in an includedir.
// Tests (internal/dbustest), the demo and the benchmarks run such a bus so that they exercise
// the policy that ships, not a permissive stand-in. How the daemon process is started and
// stopped stays with each caller: their lifetimes differ (t.Cleanup, the demo's parent-death
// signal, the benchmark's cleanup list).
package privatebus

import (
	"fmt"
	"os"
	"path/filepath"
)

const config = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <includedir>%s</includedir>
</busconfig>
`

// Policies returns the project's policy files, root/dbus/*.conf.
func Policies(root string) ([]string, error) {
	ps, err := filepath.Glob(filepath.Join(root, "dbus", "*.conf"))
	if err == nil && len(ps) == 0 {
		err = fmt.Errorf("no policy files in %s", filepath.Join(root, "dbus"))
	}
	return ps, err
}

// Write writes dir/bus.conf, listening on dir/bus, and copies the policy files into
// dir/system.d (dir must exist). It returns the bus address and the arguments to run
// dbus-daemon with: in the foreground, printing its address on stdout once it listens.
func Write(dir string, policies []string) (address string, args []string, err error) {
	policyDir := filepath.Join(dir, "system.d")
	if err := os.MkdirAll(policyDir, 0o755); err != nil {
		return "", nil, err
	}
	for _, p := range policies {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", nil, fmt.Errorf("bus policy: %w", err)
		}
		if err := os.WriteFile(filepath.Join(policyDir, filepath.Base(p)), b, 0o644); err != nil {
			return "", nil, err
		}
	}
	sock := filepath.Join(dir, "bus")
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, config, sock, policyDir), 0o644); err != nil {
		return "", nil, err
	}
	return "unix:path=" + sock, []string{"--config-file=" + conf, "--nofork", "--print-address=1"}, nil
}
