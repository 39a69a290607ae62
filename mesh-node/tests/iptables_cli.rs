//! `mesh-node iptables` as a user runs it: `--print` shows the rules the
//! flags describe and touches nothing, so it needs no root; `--apply`
//! without the proxy's uid is refused before any iptables command runs.
//! (Applying for real is in `transparent_netns.rs`, inside network
//! namespaces.)

use std::process::{Command, Output};

fn mesh_node(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mesh-node"))
        .arg("iptables")
        .args(args)
        .output()
        .expect("run mesh-node")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{out:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn print_shows_the_default_rules_for_the_proxy_uid() {
    let text = stdout(&mesh_node(&["--print", "--proxy-uid", "1337"]));
    assert_eq!(
        text,
        "\
iptables -w 5 -t nat -N MESH_INBOUND
iptables -w 5 -t nat -N MESH_REDIRECT
iptables -w 5 -t nat -N MESH_IN_REDIRECT
iptables -w 5 -t nat -N MESH_OUTPUT
iptables -w 5 -t nat -A MESH_REDIRECT -p tcp -j REDIRECT --to-ports 15001
iptables -w 5 -t nat -A MESH_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
iptables -w 5 -t nat -A MESH_INBOUND -p tcp --dport 15000 -j RETURN
iptables -w 5 -t nat -A MESH_INBOUND -p tcp --dport 15001 -j RETURN
iptables -w 5 -t nat -A MESH_INBOUND -p tcp --dport 15006 -j RETURN
iptables -w 5 -t nat -A MESH_INBOUND -p tcp --dport 15008 -j RETURN
iptables -w 5 -t nat -A MESH_INBOUND -p tcp --dport 15020 -j RETURN
iptables -w 5 -t nat -A MESH_INBOUND -p tcp --dport 15021 -j RETURN
iptables -w 5 -t nat -A MESH_INBOUND -p tcp --dport 15090 -j RETURN
iptables -w 5 -t nat -A MESH_INBOUND -p tcp -j MESH_IN_REDIRECT
iptables -w 5 -t nat -A MESH_OUTPUT -m owner --uid-owner 1337 -j RETURN
iptables -w 5 -t nat -A MESH_OUTPUT -o lo -j RETURN
iptables -w 5 -t nat -A MESH_OUTPUT -j MESH_REDIRECT
iptables -w 5 -t nat -A PREROUTING -p tcp -j MESH_INBOUND
iptables -w 5 -t nat -A OUTPUT -p tcp -j MESH_OUTPUT
"
    );
}

#[test]
fn print_follows_every_flag() {
    let text = stdout(&mesh_node(&[
        "--print",
        "--proxy-uid",
        "1337",
        "--proxy-gid",
        "1338",
        "--inbound-port",
        "16006",
        "--outbound-port",
        "16001",
        "--exclude-inbound-ports",
        "22,8081",
        "--exclude-outbound-ports",
        "5432",
        "--include-inbound-ports",
        "9080,9443",
        "--ipv6",
    ]));
    let lines: Vec<&str> = text.lines().collect();
    let (v4, v6) = lines.split_at(lines.len() / 2);
    assert!(v4.iter().all(|l| l.starts_with("iptables -w 5 -t nat ")));
    assert!(v6.iter().all(|l| l.starts_with("ip6tables -w 5 -t nat ")));
    for rule in [
        "-A MESH_REDIRECT -p tcp -j REDIRECT --to-ports 16001",
        "-A MESH_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006",
        // The sidecar's own ports stay excluded; the flag's are added.
        "-A MESH_INBOUND -p tcp --dport 15000 -j RETURN",
        "-A MESH_INBOUND -p tcp --dport 22 -j RETURN",
        "-A MESH_INBOUND -p tcp --dport 8081 -j RETURN",
        "-A MESH_INBOUND -p tcp --dport 9080 -j MESH_IN_REDIRECT",
        "-A MESH_INBOUND -p tcp --dport 9443 -j MESH_IN_REDIRECT",
        "-A MESH_OUTPUT -m owner --uid-owner 1337 -j RETURN",
        "-A MESH_OUTPUT -m owner --gid-owner 1338 -j RETURN",
        "-A MESH_OUTPUT -p tcp --dport 5432 -j RETURN",
    ] {
        for (family, lines) in [("iptables", v4), ("ip6tables", v6)] {
            let want = format!("{family} -w 5 -t nat {rule}");
            assert!(lines.contains(&want.as_str()), "no {want:?} in\n{text}");
        }
    }
    // Only the listed ports are redirected inbound: no catch-all.
    assert!(!text.contains("-A MESH_INBOUND -p tcp -j MESH_IN_REDIRECT"));
}

#[test]
fn apply_and_print_without_the_proxy_uid_fail_with_one_line() {
    for action in ["--apply", "--print"] {
        let out = mesh_node(&[action]);
        assert_eq!(out.status.code(), Some(1), "{action}: {out:?}");
        assert!(out.stdout.is_empty(), "{action} printed rules: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("mesh-node iptables: {action} needs --proxy-uid")),
            "{stderr}"
        );
    }
}

#[test]
fn exactly_one_action_is_required() {
    // Neither may reach iptables: without --proxy-uid nothing can apply.
    for args in [&[][..], &["--print", "--apply"][..]] {
        let out = mesh_node(args);
        assert!(!out.status.success(), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--apply|--remove|--print"),
            "{args:?}: {out:?}"
        );
    }
}
