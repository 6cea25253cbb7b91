//! `legate iptables` in network namespaces made by the test: the rules go
//! in as printed, applying twice leaves one copy, `clean` restores the
//! table exactly, and the rules do redirect: outbound TCP reaches the
//! outbound port with its original destination readable
//! (`SO_ORIGINAL_DST`), while the proxy's UID connects as is.
//!
//! Needs root, `ip` and `iptables` (and python3 for the traffic check).
//! Outside CI a machine without them skips with a note; under CI (`CI`
//! set) they fail. Each namespace is deleted when its test ends, failed or
//! not.

#[path = "common/netns.rs"]
mod netns;
use netns::{LEGATE, Netns, can_run};

fn rules_of(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("-A ")).collect()
}

#[test]
fn apply_installs_what_print_shows_once_and_clean_restores_the_table() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let before = ns.nat("iptables-save");
    let args = ["--exclude-outbound-ports", "3306", "--ipv6", "off"];
    let printed = ns.ok(&[
        LEGATE, "iptables", "print", args[0], args[1], args[2], args[3],
    ]);
    ns.ok(&[
        LEGATE, "iptables", "apply", args[0], args[1], args[2], args[3],
    ]);
    let applied = ns.nat("iptables-save");
    assert_eq!(
        rules_of(&applied),
        rules_of(&printed),
        "the table holds exactly what print shows"
    );
    assert!(applied.contains("-A LEGATE_OUTPUT -p tcp -m tcp --dport 3306 -j RETURN"));

    // Twice: one copy.
    ns.ok(&[
        LEGATE, "iptables", "apply", args[0], args[1], args[2], args[3],
    ]);
    assert_eq!(ns.nat("iptables-save"), applied);

    ns.ok(&[LEGATE, "iptables", "clean"]);
    assert_eq!(
        ns.nat("iptables-save"),
        before,
        "clean leaves the table as it was"
    );
    // Nothing to clean: still fine.
    ns.ok(&[LEGATE, "iptables", "clean"]);
    assert_eq!(ns.nat("iptables-save"), before);
}

#[test]
fn rules_someone_else_added_survive_apply_and_clean() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    ns.ok(&["iptables", "-t", "nat", "-N", "OTHER"]);
    ns.ok(&[
        "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "udp", "-j", "OTHER",
    ]);
    let before = ns.nat("iptables-save");
    ns.ok(&[LEGATE, "iptables", "apply", "--ipv6", "off"]);
    let applied = ns.nat("iptables-save");
    assert!(applied.contains("-A OUTPUT -p udp -j OTHER"));
    ns.ok(&[LEGATE, "iptables", "clean"]);
    assert_eq!(ns.nat("iptables-save"), before);
}

#[test]
fn ipv6_rules_go_through_ip6tables() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let before = ns.nat("ip6tables-save");
    ns.ok(&[LEGATE, "iptables", "apply", "--ipv6", "on"]);
    let applied = ns.nat("ip6tables-save");
    assert!(
        applied.contains("-A LEGATE_OUTPUT -s ::6/128 -o lo -j RETURN"),
        "{applied}"
    );
    assert!(applied.contains("-A LEGATE_REDIRECT -p tcp -j REDIRECT --to-ports 15001"));
    // `clean` finds the IPv6 chains by itself.
    ns.ok(&[LEGATE, "iptables", "clean"]);
    assert_eq!(ns.nat("ip6tables-save"), before);
}

#[test]
fn a_bad_option_is_refused_and_changes_nothing() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let before = ns.nat("iptables-save");
    let out = ns.exec(&[
        LEGATE,
        "iptables",
        "apply",
        "--exclude-outbound-cidrs",
        "10.0.0.0/8,300.1.1.1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--exclude-outbound-cidrs: \"300.1.1.1\" is not a CIDR"),
        "{err}"
    );
    assert_eq!(ns.nat("iptables-save"), before);
}

/// Run inside the namespace: listens on the outbound port, connects to
/// 192.0.2.10:80 (beyond the namespace's veth, where nobody answers: a
/// direct connection never completes) as root, then as the proxy's UID;
/// prints what happened.
const TRAFFIC: &str = r#"
import os, socket, struct, sys
SO_ORIGINAL_DST = 80
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 15001)); l.listen(8)
def attempt():
    c = socket.socket(); c.settimeout(0.5)
    try:
        c.connect(("192.0.2.10", 80))
    except OSError as e:
        return "direct (%s)" % e
    s, _ = l.accept()
    raw = s.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, ip = struct.unpack("!2xH4s8x", raw)
    return "redirected original=%s:%d" % (socket.inet_ntoa(ip), port)
print("app:", attempt())
r, w = os.pipe()
if os.fork() == 0:
    os.setgid(1337); os.setuid(1337)
    os.write(w, attempt().encode()); os._exit(0)
os.wait()
print("proxy:", os.read(r, 200).decode())
sys.stdout.flush()
"#;

#[test]
fn outbound_tcp_is_redirected_with_its_original_destination_except_the_proxys() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    // A veth pair with both ends in the namespace: what goes out of one
    // end finds nobody at 192.0.2.10 (no ARP answer).
    ns.ok(&[
        "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1",
    ]);
    ns.ok(&["ip", "addr", "add", "192.0.2.1/24", "dev", "v0"]);
    ns.ok(&["ip", "link", "set", "v0", "up"]);
    ns.ok(&["ip", "link", "set", "v1", "up"]);

    // Without the rules the connection goes out the veth.
    let direct = ns.ok(&["python3", "-c", TRAFFIC]);
    assert!(direct.contains("app: direct"), "{direct}");

    ns.ok(&[LEGATE, "iptables", "apply", "--ipv6", "off"]);
    let through = ns.ok(&["python3", "-c", TRAFFIC]);
    assert!(
        through.contains("app: redirected original=192.0.2.10:80"),
        "{through}"
    );
    assert!(
        through.contains("proxy: direct"),
        "the proxy's UID is not redirected: {through}"
    );

    ns.ok(&[LEGATE, "iptables", "clean"]);
    let after = ns.ok(&["python3", "-c", TRAFFIC]);
    assert!(
        after.contains("app: direct"),
        "clean restores direct traffic: {after}"
    );
}
