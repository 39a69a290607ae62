//! The server's Prometheus metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `(label, value)` pairs.
pub(crate) type Labels = Vec<(&'static str, String)>;

/// What the server counts, registered under `mesh_node_server_*`.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    /// Registration entries.
    pub(crate) entries: Gauge,
    /// Attested nodes on record.
    pub(crate) agents: Gauge,
    /// Open sync streams.
    pub(crate) sync_streams: Gauge,
    /// Node API calls by method and outcome.
    pub(crate) calls: Family<Labels, Counter>,
    /// Errors by kind.
    pub(crate) errors: Family<Labels, Counter>,
    /// CA key slots by kind and state.
    pub(crate) ca_slots: Family<Labels, Gauge>,
    /// The version of the policy set in force.
    pub(crate) policy_version: Gauge,
    /// Federated bundle fetches by trust domain and outcome (`accepted`
    /// or the refusal reason).
    pub(crate) federation_fetches: Family<Labels, Counter>,
}

impl ServerMetrics {
    /// Registers every metric in `registry`.
    pub fn register(self: &std::sync::Arc<Self>, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("mesh_node_server");
        r.register("entries", "Registration entries", self.entries.clone());
        r.register("agents", "Attested nodes on record", self.agents.clone());
        r.register(
            "sync_streams",
            "Open entry sync streams",
            self.sync_streams.clone(),
        );
        r.register(
            "node_api_calls",
            "Node API calls by method and outcome",
            self.calls.clone(),
        );
        r.register("errors", "Errors by kind", self.errors.clone());
        r.register(
            "policy_version",
            "Version of the policy set in force",
            self.policy_version.clone(),
        );
        r.register(
            "federation_fetches",
            "Federated bundle fetches by trust domain and outcome (accepted or the refusal reason)",
            self.federation_fetches.clone(),
        );
        r.register(
            "ca_slots",
            "CA key slots by kind and state",
            self.ca_slots.clone(),
        );
    }

    /// Counts one call of `method` with its outcome.
    pub(crate) fn count_result<T, E: std::fmt::Display>(
        &self,
        method: &'static str,
        r: &Result<T, E>,
    ) {
        let outcome = if r.is_ok() { "ok" } else { "error" };
        self.calls
            .get_or_create(&vec![
                ("method", method.into()),
                ("outcome", outcome.into()),
            ])
            .inc();
    }

    /// Counts one error of `kind`.
    pub(crate) fn error(&self, kind: &'static str) {
        self.errors
            .get_or_create(&vec![("kind", kind.into())])
            .inc();
    }

    /// Counts `n` fetches of `trust_domain`'s bundle with `outcome`.
    pub(crate) fn federation_fetch(&self, trust_domain: &str, outcome: &str, n: u64) {
        self.federation_fetches
            .get_or_create(&vec![
                ("trust_domain", trust_domain.into()),
                ("outcome", outcome.into()),
            ])
            .inc_by(n);
    }
}
