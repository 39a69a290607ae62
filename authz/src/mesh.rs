//! Mesh-wide settings and the workload the engine decides for.

use std::collections::BTreeMap;

use spiffe_core::SpiffeId;

/// Label that marks a Gateway-API-managed gateway pod (S-5).
const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// The workload whose inbound traffic is being decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub(crate) namespace: String,
    pub(crate) labels: BTreeMap<String, String>,
}

impl Workload {
    /// A workload in `namespace` with no labels.
    pub fn new(namespace: impl Into<String>) -> Self {
        Workload {
            namespace: namespace.into(),
            labels: BTreeMap::new(),
        }
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// The workload an Istio-form SPIFFE ID names
    /// (`spiffe://TD/ns/NAMESPACE/sa/ACCOUNT`): namespace `NAMESPACE`, no
    /// labels. `None` for IDs of any other form.
    ///
    /// ```
    /// use authz::Workload;
    /// let id = "spiffe://example.org/ns/shop/sa/cart".parse().unwrap();
    /// assert_eq!(Workload::from_spiffe_id(&id).unwrap().namespace(), "shop");
    /// assert!(Workload::from_spiffe_id(&"spiffe://example.org/cart".parse().unwrap()).is_none());
    /// ```
    pub fn from_spiffe_id(id: &SpiffeId) -> Option<Self> {
        let mut parts = id.path().strip_prefix('/')?.split('/');
        match (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (Some("ns"), Some(ns), Some("sa"), Some(_), None) => Some(Workload::new(ns)),
            _ => None,
        }
    }

    /// The workload's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Whether this is a gateway created from the Gateway API (S-5).
    pub(crate) fn is_gateway_api_gateway(&self) -> bool {
        self.labels.contains_key(GATEWAY_NAME_LABEL)
    }
}

/// What transport an extension provider speaks (T-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderKind {
    /// `envoyExtAuthzHttp`: HTTP only, never applied to TCP.
    Http,
    /// `envoyExtAuthzGrpc`: HTTP and TCP.
    Grpc,
}

/// One `meshConfig.extensionProviders` entry usable by CUSTOM policies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtensionProvider {
    /// Provider name referenced by `provider.name`.
    pub name: String,
    /// Transport of the provider.
    pub kind: ProviderKind,
}

impl ExtensionProvider {
    /// A provider with the given name and transport.
    pub fn new(name: impl Into<String>, kind: ProviderKind) -> Self {
        ExtensionProvider {
            name: name.into(),
            kind,
        }
    }
}

/// The parts of Istio's `meshConfig` that change decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MeshConfig {
    /// `rootNamespace` (default `istio-system`, S-1).
    pub root_namespace: String,
    /// `trustDomain` (default `cluster.local`, I-5).
    pub trust_domain: String,
    /// `trustDomainAliases` (I-5).
    pub trust_domain_aliases: Vec<String>,
    /// `extensionProviders` for CUSTOM policies (E-2).
    pub extension_providers: Vec<ExtensionProvider>,
    /// `PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS` (E-2).
    pub allow_multiple_custom_providers: bool,
    /// The feature flag that lets Gateway-API gateways honour selector policies (S-5).
    pub selector_policies_on_gateway_api: bool,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            root_namespace: "istio-system".to_owned(),
            trust_domain: "cluster.local".to_owned(),
            trust_domain_aliases: Vec::new(),
            extension_providers: Vec::new(),
            allow_multiple_custom_providers: false,
            selector_policies_on_gateway_api: false,
        }
    }
}

impl MeshConfig {
    /// Sets the root namespace.
    #[must_use]
    pub fn with_root_namespace(mut self, ns: impl Into<String>) -> Self {
        self.root_namespace = ns.into();
        self
    }

    /// The defaults, with the trust domain of `id`: the identity a
    /// workload holds names the mesh it belongs to, so policies written
    /// Istio's way (`cluster.local/ns/foo/sa/bar`) mean this trust domain
    /// (I-5) without a separate setting.
    ///
    /// ```
    /// use authz::MeshConfig;
    /// let id = "spiffe://example.org/ns/shop/sa/cart".parse().unwrap();
    /// assert_eq!(MeshConfig::for_identity(&id).trust_domain, "example.org");
    /// ```
    pub fn for_identity(id: &SpiffeId) -> Self {
        MeshConfig::default().with_trust_domain(id.trust_domain().as_str())
    }

    /// Sets the mesh trust domain.
    #[must_use]
    pub fn with_trust_domain(mut self, td: impl Into<String>) -> Self {
        self.trust_domain = td.into();
        self
    }

    /// Adds a trust-domain alias.
    #[must_use]
    pub fn with_trust_domain_alias(mut self, td: impl Into<String>) -> Self {
        self.trust_domain_aliases.push(td.into());
        self
    }

    /// Registers an extension provider.
    #[must_use]
    pub fn with_extension_provider(mut self, provider: ExtensionProvider) -> Self {
        self.extension_providers.push(provider);
        self
    }

    /// `[trustDomain] + trustDomainAliases`.
    pub(crate) fn trust_domains(&self) -> Vec<String> {
        let mut all = vec![self.trust_domain.clone()];
        for alias in &self.trust_domain_aliases {
            if !all.contains(alias) {
                all.push(alias.clone());
            }
        }
        all
    }
}
