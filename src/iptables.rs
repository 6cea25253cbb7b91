//! `legate iptables apply|print|clean`: the NAT rules that send a pod's TCP
//! through its sidecar without the application knowing, as Istio's init
//! container (`istio-iptables`) installs them.
//!
//! Outbound TCP from the pod goes to the outbound listener (15001), inbound
//! TCP to the pod goes to the inbound listener (15006). The proxy's own
//! connections (its UID or GID, 1337 by default) are left alone, so it
//! does not loop; so is loopback traffic, except the proxy's own calls to
//! the pod's address over `lo`, which are inbound calls (an application
//! calling a service that resolves to its own pod), and except traffic from
//! 127.0.0.6, the source the inbound listener uses to reach the
//! application (Istio's inbound passthrough address).
//!
//! The rules live in four chains of the `nat` table, with one jump each
//! from `PREROUTING` and `OUTPUT`; `print` shows them exactly as `apply`
//! loads them (an `iptables-restore` input, in `iptables-save`'s own
//! notation), `clean` removes exactly those, and applying twice leaves one
//! copy. IPv6 gets the same rules through `ip6tables` when the namespace
//! has a global IPv6 address (`--ipv6 auto`).

use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};

/// The chains Legate adds to the `nat` table.
pub const CHAINS: [&str; 4] = [
    "LEGATE_INBOUND",
    "LEGATE_IN_REDIRECT",
    "LEGATE_OUTPUT",
    "LEGATE_REDIRECT",
];

#[derive(Subcommand, Debug)]
pub enum IptablesCommand {
    /// Install the rules in this network namespace (needs NET_ADMIN);
    /// replaces Legate's rules if they are there already.
    Apply(RuleArgs),
    /// Print the rules `apply` would install (an `iptables-restore` input).
    Print(RuleArgs),
    /// Remove Legate's rules and chains (and nothing else).
    Clean {
        /// `on`: ip6tables too; `off`: not; `auto`: when ip6tables has
        /// Legate's chains.
        #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
        ipv6: String,
    },
}

/// What the rules redirect, and what they leave alone.
#[derive(Args, Debug, Clone)]
pub struct RuleArgs {
    /// Port of the outbound listener: outbound TCP goes there.
    #[arg(long, default_value_t = 15001)]
    pub outbound_port: u16,
    /// Port of the inbound listener: inbound TCP goes there.
    #[arg(long, default_value_t = 15006)]
    pub inbound_port: u16,
    /// UID the proxy runs as: its connections are not redirected.
    #[arg(long, default_value_t = 1337)]
    pub proxy_uid: u32,
    /// GID the proxy runs as: its connections are not redirected.
    #[arg(long, default_value_t = 1337)]
    pub proxy_gid: u32,
    /// Outbound destinations redirected: `*` (all) or comma-separated
    /// CIDRs.
    #[arg(long, default_value = "*")]
    pub include_outbound_cidrs: String,
    /// Outbound destinations never redirected (comma-separated CIDRs).
    #[arg(long, default_value = "")]
    pub exclude_outbound_cidrs: String,
    /// Outbound destination ports never redirected (comma-separated).
    #[arg(long, default_value = "")]
    pub exclude_outbound_ports: String,
    /// Inbound ports redirected: `*` (all) or comma-separated ports.
    #[arg(long, default_value = "*")]
    pub include_inbound_ports: String,
    /// Inbound ports never redirected (with `--include-inbound-ports '*'`):
    /// by default Legate's admin port and the usual sidecar health and
    /// metrics ports.
    #[arg(long, default_value = "15000,15020,15021,15090")]
    pub exclude_inbound_ports: String,
    /// `on`: ip6tables too; `off`: not; `auto`: when this namespace has
    /// a global IPv6 address.
    #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
    pub ipv6: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    #[error("--{option}: {value:?} is not {expected}")]
    BadOption {
        option: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("cannot run {program}: {source} (is iptables installed?)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// An address family's rule set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn iptables(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    fn restore(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    fn localhost(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.1/32",
            Family::V6 => "::1/128",
        }
    }

    /// The inbound listener's source address towards the application.
    fn passthrough(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.6/32",
            Family::V6 => "::6/128",
        }
    }
}

fn ports(option: &'static str, value: &str) -> Result<Vec<u16>, IptablesError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(IptablesError::BadOption {
                option,
                value: p.to_string(),
                expected: "a port (1-65535)",
            }),
        })
        .collect()
}

/// CIDRs of `family` in `value` (comma-separated; a bare address is a
/// host), in `iptables-save`'s notation. The other family's are skipped:
/// one list serves both rule sets.
fn cidrs(option: &'static str, value: &str, family: Family) -> Result<Vec<String>, IptablesError> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let bad = || IptablesError::BadOption {
            option,
            value: item.to_string(),
            expected: "a CIDR (address/prefix length)",
        };
        let (addr, len) = match item.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (item, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(bad)?,
            None => max,
        };
        if addr.is_ipv4() != (family == Family::V4) {
            continue;
        }
        // iptables keeps the network address: 10.1.2.3/8 is 10.0.0.0/8.
        let net = match addr {
            IpAddr::V4(a) => {
                let mask = if len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(len))
                };
                IpAddr::from((u32::from(a) & mask).to_be_bytes())
            }
            IpAddr::V6(a) => {
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(len))
                };
                IpAddr::from((u128::from(a) & mask).to_be_bytes())
            }
        };
        out.push(format!("{net}/{len}"));
    }
    Ok(out)
}

/// Checks every option (both families' CIDRs) before anything is changed.
pub fn check(args: &RuleArgs) -> Result<(), IptablesError> {
    rules(args, Family::V4)?;
    rules(args, Family::V6)?;
    Ok(())
}

/// The rules for `family`, as `iptables-restore --noflush` input.
pub fn rules(args: &RuleArgs, family: Family) -> Result<String, IptablesError> {
    let all_outbound = args.include_outbound_cidrs.trim() == "*";
    let include_cidrs = if all_outbound {
        Vec::new()
    } else {
        cidrs(
            "include-outbound-cidrs",
            &args.include_outbound_cidrs,
            family,
        )?
    };
    let exclude_cidrs = cidrs(
        "exclude-outbound-cidrs",
        &args.exclude_outbound_cidrs,
        family,
    )?;
    let exclude_out_ports = ports("exclude-outbound-ports", &args.exclude_outbound_ports)?;
    let all_inbound = args.include_inbound_ports.trim() == "*";
    let include_in_ports = if all_inbound {
        Vec::new()
    } else {
        ports("include-inbound-ports", &args.include_inbound_ports)?
    };
    let exclude_in_ports = ports("exclude-inbound-ports", &args.exclude_inbound_ports)?;
    let (uid, gid) = (args.proxy_uid, args.proxy_gid);
    let lo = family.localhost();

    let mut r = String::from("*nat\n");
    for chain in CHAINS {
        let _ = writeln!(r, ":{chain} - [0:0]");
    }
    r.push_str("-A PREROUTING -p tcp -j LEGATE_INBOUND\n");
    r.push_str("-A OUTPUT -p tcp -j LEGATE_OUTPUT\n");
    // Inbound: every port but the excluded ones, or only the included.
    if all_inbound {
        for p in &exclude_in_ports {
            let _ = writeln!(r, "-A LEGATE_INBOUND -p tcp -m tcp --dport {p} -j RETURN");
        }
        r.push_str("-A LEGATE_INBOUND -p tcp -j LEGATE_IN_REDIRECT\n");
    } else {
        for p in &include_in_ports {
            let _ = writeln!(
                r,
                "-A LEGATE_INBOUND -p tcp -m tcp --dport {p} -j LEGATE_IN_REDIRECT"
            );
        }
    }
    let _ = writeln!(
        r,
        "-A LEGATE_IN_REDIRECT -p tcp -j REDIRECT --to-ports {}",
        args.inbound_port
    );
    // Outbound.
    for p in &exclude_out_ports {
        let _ = writeln!(r, "-A LEGATE_OUTPUT -p tcp -m tcp --dport {p} -j RETURN");
    }
    let _ = writeln!(
        r,
        "-A LEGATE_OUTPUT -s {} -o lo -j RETURN",
        family.passthrough()
    );
    for (kind, id) in [("uid", uid), ("gid", gid)] {
        // The proxy calling the pod's own address over lo: an inbound call.
        let _ = writeln!(
            r,
            "-A LEGATE_OUTPUT ! -d {lo} -o lo -m owner --{kind}-owner {id} -j LEGATE_IN_REDIRECT"
        );
        // The application over lo: left alone.
        let _ = writeln!(
            r,
            "-A LEGATE_OUTPUT -o lo -m owner ! --{kind}-owner {id} -j RETURN"
        );
        // The proxy's own outbound connections: never redirected.
        let _ = writeln!(r, "-A LEGATE_OUTPUT -m owner --{kind}-owner {id} -j RETURN");
    }
    let _ = writeln!(r, "-A LEGATE_OUTPUT -d {lo} -j RETURN");
    for c in &exclude_cidrs {
        let _ = writeln!(r, "-A LEGATE_OUTPUT -d {c} -j RETURN");
    }
    if all_outbound {
        r.push_str("-A LEGATE_OUTPUT -j LEGATE_REDIRECT\n");
    } else {
        for c in &include_cidrs {
            let _ = writeln!(r, "-A LEGATE_OUTPUT -d {c} -j LEGATE_REDIRECT");
        }
    }
    let _ = writeln!(
        r,
        "-A LEGATE_REDIRECT -p tcp -j REDIRECT --to-ports {}",
        args.outbound_port
    );
    r.push_str("COMMIT\n");
    Ok(r)
}

/// Whether this network namespace has a global IPv6 address.
pub fn has_global_ipv6() -> bool {
    // Columns: address, index, prefix length, scope, flags, name; scope 00
    // is global.
    std::fs::read_to_string("/proc/net/if_inet6")
        .map(|t| t.lines().any(|l| l.split_whitespace().nth(3) == Some("00")))
        .unwrap_or(false)
}

fn families(ipv6: &str, auto: impl FnOnce() -> bool) -> Vec<Family> {
    match ipv6 {
        "on" => vec![Family::V4, Family::V6],
        "off" => vec![Family::V4],
        _ if auto() => vec![Family::V4, Family::V6],
        _ => vec![Family::V4],
    }
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, IptablesError> {
    let spawn = |source| IptablesError::Spawn {
        program: program.to_string(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(spawn)?;
    }
    let out = child.wait_with_output().map_err(spawn)?;
    if !out.status.success() {
        return Err(IptablesError::Failed {
            program: format!("{program} {}", args.join(" ")),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `family`'s nat table has Legate's chains.
fn installed(family: Family) -> bool {
    run(family.iptables(), &["-t", "nat", "-S", CHAINS[0]], None).is_ok()
}

/// Removes Legate's jumps and chains from `family`'s nat table (what is
/// not there is skipped).
fn clean_family(family: Family) -> Result<(), IptablesError> {
    let ipt = family.iptables();
    for (chain, target) in [("PREROUTING", CHAINS[0]), ("OUTPUT", CHAINS[2])] {
        // Every copy (a rule added by hand twice, say).
        while run(
            ipt,
            &["-t", "nat", "-C", chain, "-p", "tcp", "-j", target],
            None,
        )
        .is_ok()
        {
            run(
                ipt,
                &["-t", "nat", "-D", chain, "-p", "tcp", "-j", target],
                None,
            )?;
        }
    }
    for chain in CHAINS {
        if run(ipt, &["-t", "nat", "-S", chain], None).is_ok() {
            run(ipt, &["-t", "nat", "-F", chain], None)?;
        }
    }
    for chain in CHAINS {
        if run(ipt, &["-t", "nat", "-S", chain], None).is_ok() {
            run(ipt, &["-t", "nat", "-X", chain], None)?;
        }
    }
    Ok(())
}

/// Installs the rules (replacing Legate's earlier ones).
pub fn apply(args: &RuleArgs) -> Result<Vec<Family>, IptablesError> {
    check(args)?;
    let families = families(&args.ipv6, has_global_ipv6);
    for &family in &families {
        let text = rules(args, family)?;
        clean_family(family)?;
        if let Err(e) = run(family.restore(), &["--noflush"], Some(&text)) {
            // Leave nothing half-made.
            let _ = clean_family(family);
            return Err(e);
        }
    }
    Ok(families)
}

/// Removes Legate's rules.
pub fn clean(ipv6: &str) -> Result<Vec<Family>, IptablesError> {
    let families = families(ipv6, || installed(Family::V6));
    for &family in &families {
        clean_family(family)?;
    }
    Ok(families)
}

/// Runs `legate iptables ...`.
pub fn main(cmd: &IptablesCommand) -> std::process::ExitCode {
    let result = match cmd {
        IptablesCommand::Print(args) => check(args).and_then(|()| {
            for family in families(&args.ipv6, has_global_ipv6) {
                println!("# {} ({})", family.name(), family.restore());
                print!("{}", rules(args, family)?);
            }
            Ok(())
        }),
        IptablesCommand::Apply(args) => apply(args).map(|f| {
            let names: Vec<_> = f.iter().map(|f| f.name()).collect();
            eprintln!("legate: iptables rules applied ({})", names.join(", "));
        }),
        IptablesCommand::Clean { ipv6 } => clean(ipv6).map(|f| {
            let names: Vec<_> = f.iter().map(|f| f.name()).collect();
            eprintln!("legate: iptables rules removed ({})", names.join(", "));
        }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        args: RuleArgs,
    }

    fn args(extra: &[&str]) -> RuleArgs {
        let mut argv = vec!["t"];
        argv.extend_from_slice(extra);
        T::parse_from(argv).args
    }

    #[test]
    fn the_default_rules_are_istios_with_legates_chains() {
        let expected = "\
*nat
:LEGATE_INBOUND - [0:0]
:LEGATE_IN_REDIRECT - [0:0]
:LEGATE_OUTPUT - [0:0]
:LEGATE_REDIRECT - [0:0]
-A PREROUTING -p tcp -j LEGATE_INBOUND
-A OUTPUT -p tcp -j LEGATE_OUTPUT
-A LEGATE_INBOUND -p tcp -m tcp --dport 15000 -j RETURN
-A LEGATE_INBOUND -p tcp -m tcp --dport 15020 -j RETURN
-A LEGATE_INBOUND -p tcp -m tcp --dport 15021 -j RETURN
-A LEGATE_INBOUND -p tcp -m tcp --dport 15090 -j RETURN
-A LEGATE_INBOUND -p tcp -j LEGATE_IN_REDIRECT
-A LEGATE_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A LEGATE_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN
-A LEGATE_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 1337 -j LEGATE_IN_REDIRECT
-A LEGATE_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A LEGATE_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A LEGATE_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --gid-owner 1337 -j LEGATE_IN_REDIRECT
-A LEGATE_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A LEGATE_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A LEGATE_OUTPUT -d 127.0.0.1/32 -j RETURN
-A LEGATE_OUTPUT -j LEGATE_REDIRECT
-A LEGATE_REDIRECT -p tcp -j REDIRECT --to-ports 15001
COMMIT
";
        assert_eq!(rules(&args(&[]), Family::V4).unwrap(), expected);
        let v6 = rules(&args(&[]), Family::V6).unwrap();
        assert!(v6.contains("-A LEGATE_OUTPUT -s ::6/128 -o lo -j RETURN\n"));
        assert!(v6.contains("-A LEGATE_OUTPUT -d ::1/128 -j RETURN\n"));
    }

    #[test]
    fn options_narrow_what_is_redirected() {
        let a = args(&[
            "--include-outbound-cidrs",
            "10.1.2.3/8, 192.168.0.0/16,fd00::/8",
            "--exclude-outbound-cidrs",
            "10.9.9.9",
            "--exclude-outbound-ports",
            "3306",
            "--include-inbound-ports",
            "8080,9090",
            "--outbound-port",
            "16001",
            "--inbound-port",
            "16006",
            "--proxy-uid",
            "2000",
        ]);
        let v4 = rules(&a, Family::V4).unwrap();
        for line in [
            "-A LEGATE_INBOUND -p tcp -m tcp --dport 8080 -j LEGATE_IN_REDIRECT\n",
            "-A LEGATE_INBOUND -p tcp -m tcp --dport 9090 -j LEGATE_IN_REDIRECT\n",
            "-A LEGATE_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006\n",
            "-A LEGATE_OUTPUT -p tcp -m tcp --dport 3306 -j RETURN\n",
            "-A LEGATE_OUTPUT -m owner --uid-owner 2000 -j RETURN\n",
            "-A LEGATE_OUTPUT -d 10.9.9.9/32 -j RETURN\n",
            "-A LEGATE_OUTPUT -d 10.0.0.0/8 -j LEGATE_REDIRECT\n",
            "-A LEGATE_OUTPUT -d 192.168.0.0/16 -j LEGATE_REDIRECT\n",
            "-A LEGATE_REDIRECT -p tcp -j REDIRECT --to-ports 16001\n",
        ] {
            assert!(v4.contains(line), "missing {line:?} in\n{v4}");
        }
        assert!(!v4.contains("-A LEGATE_OUTPUT -j LEGATE_REDIRECT"));
        assert!(!v4.contains("--dport 15000"), "include list: no excludes");
        let v6 = rules(&a, Family::V6).unwrap();
        assert!(v6.contains("-A LEGATE_OUTPUT -d fd00::/8 -j LEGATE_REDIRECT\n"));
        assert!(!v6.contains("10.0.0.0"));
    }

    #[test]
    fn bad_options_are_refused_naming_the_option() {
        for (extra, needle) in [
            (
                ["--include-outbound-cidrs", "10.0.0.0/33"],
                "--include-outbound-cidrs: \"10.0.0.0/33\" is not a CIDR",
            ),
            (
                ["--exclude-outbound-cidrs", "nonsense"],
                "--exclude-outbound-cidrs: \"nonsense\" is not a CIDR",
            ),
            (
                ["--exclude-inbound-ports", "15000,0"],
                "--exclude-inbound-ports: \"0\" is not a port",
            ),
            (
                ["--include-inbound-ports", "http"],
                "--include-inbound-ports: \"http\" is not a port",
            ),
        ] {
            let e = check(&args(&extra)).unwrap_err().to_string();
            assert!(e.starts_with(needle), "{e}");
        }
    }

    #[test]
    fn ipv6_follows_the_flag_or_the_namespace() {
        assert_eq!(families("on", || false), [Family::V4, Family::V6]);
        assert_eq!(families("off", || true), [Family::V4]);
        assert_eq!(families("auto", || true), [Family::V4, Family::V6]);
        assert_eq!(families("auto", || false), [Family::V4]);
    }
}
