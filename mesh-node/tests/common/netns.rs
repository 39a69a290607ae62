//! Hosts for the tests: network namespaces joined by veth pairs and a
//! bridge, with addresses from 10.211.1.0/24 that exist only inside them.
//!
//! ```text
//!   mn<pid>s (server)            mn<pid>a (agent)     mn<pid>b (agent)
//!   br0 10.211.1.1/24
//!    ├─ mn<pid>a0 ──── veth ──── mn<pid>a1 10.211.1.2/24
//!    └─ mn<pid>b0 ──── veth ──────────────────────── mn<pid>b1 10.211.1.3/24
//! ```
//!
//! No namespace has a default route, so traffic cannot leave them.

/// The server's address inside its namespace.
pub(crate) const SERVER_IP: &str = "10.211.1.1";
/// The bridge in the server's namespace; setting it down cuts the server off.
pub(crate) const BRIDGE: &str = "br0";
const PREFIX: &str = "mn";

/// Namespaces this process made; deleted on drop (after the processes in
/// them, which the caller's `Proc`s kill, are gone).
pub(crate) struct Topology {
    /// The server's namespace.
    pub(crate) server: String,
    /// One namespace per agent, with its address.
    pub(crate) agents: Vec<(String, String)>,
}

pub(crate) use test_support::netns::{delete_netns as remove, ip};

/// Deletes namespaces an earlier run of this test left behind when it was
/// killed outright (names `mn<pid>…` whose pid no longer runs), with the
/// processes it had started in them.
fn remove_stale() {
    for ns in test_support::netns::stale_netns(PREFIX, &["s", "a", "b"]) {
        let _ = remove(&ns);
    }
}

impl Topology {
    /// A server namespace and two agent namespaces. The error is why
    /// namespaces cannot be made here (not root, no iproute2).
    pub(crate) fn create() -> Result<Topology, String> {
        remove_stale();
        let pid = std::process::id();
        let mut topo = Topology {
            server: format!("{PREFIX}{pid}s"),
            agents: Vec::new(),
        };
        // The first step tells whether namespaces can be made at all.
        ip(&["netns", "add", &topo.server])?;
        let s = topo.server.clone();
        let setup = |topo: &mut Topology| -> Result<(), String> {
            ip(&["-n", &s, "link", "set", "lo", "up"])?;
            ip(&["-n", &s, "link", "add", BRIDGE, "type", "bridge"])?;
            ip(&[
                "-n",
                &s,
                "addr",
                "add",
                &format!("{SERVER_IP}/24"),
                "dev",
                BRIDGE,
            ])?;
            ip(&["-n", &s, "link", "set", BRIDGE, "up"])?;
            for (role, host) in [("a", 2), ("b", 3)] {
                let ns = format!("{PREFIX}{pid}{role}");
                ip(&["netns", "add", &ns])?;
                let addr = format!("10.211.1.{host}");
                topo.agents.push((ns.clone(), addr.clone()));
                let (near, far) = (
                    format!("{PREFIX}{pid}{role}0"),
                    format!("{PREFIX}{pid}{role}1"),
                );
                // Both ends are made directly inside their namespaces: no
                // interface of this test ever exists in the root namespace.
                ip(&[
                    "-n", &s, "link", "add", &near, "type", "veth", "peer", "name", &far, "netns",
                    &ns,
                ])?;
                ip(&["-n", &s, "link", "set", &near, "master", BRIDGE])?;
                ip(&["-n", &s, "link", "set", &near, "up"])?;
                ip(&["-n", &ns, "link", "set", "lo", "up"])?;
                ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", &far])?;
                ip(&["-n", &ns, "link", "set", &far, "up"])?;
            }
            Ok(())
        };
        // On failure `topo` is dropped, deleting what was made.
        setup(&mut topo)?;
        Ok(topo)
    }

    /// Sets the server's bridge down (cut off) or up.
    pub(crate) fn server_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.server, "link", "set", BRIDGE, state]).unwrap();
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // The callers' `Proc`s have killed their processes by now; anything
        // left is killed here. Deleting a namespace deletes its veth ends,
        // and with them their peers.
        for ns in self
            .agents
            .iter()
            .map(|(ns, _)| ns)
            .chain(std::iter::once(&self.server))
        {
            if let Err(e) = remove(ns) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}
