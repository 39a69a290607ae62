//! Compiling the policies that apply to one workload into indexed matchers.
//!
//! Scope (S-*) is resolved here, trust-domain aliases are expanded (I-5),
//! and a TCP variant is derived with T-2/T-3 applied.

use std::collections::HashMap;

use crate::cidr::Cidr;
use crate::condition::ConditionKey;
use crate::identity::{self, RequestPrincipal};
use crate::matcher::{Clause, CompiledRule, Ctx, Field, Matcher, PathMatch};
use crate::mesh::{MeshConfig, ProviderKind, Workload};
use crate::model::{Action, AuthorizationPolicy, Condition, Operation, Rule, Selector, Source};
use crate::pattern::StrMatch;
use crate::template::{PathTemplate, is_template};

/// S-1 … S-5: whether a policy in `namespace` with this selector/targetRefs
/// applies to the workload on a sidecar.
pub(crate) fn applies(
    namespace: &str,
    selector: Option<&Selector>,
    has_target_refs: bool,
    workload: &Workload,
    mesh: &MeshConfig,
) -> bool {
    if namespace != workload.namespace && namespace != mesh.root_namespace {
        return false;
    }
    if has_target_refs {
        return false;
    }
    match selector {
        None => true,
        Some(sel) => {
            if workload.is_gateway_api_gateway() && !mesh.selector_policies_on_gateway_api {
                return false;
            }
            sel.matches(&workload.labels)
        }
    }
}

/// Rules of one action, with indexes for principal- and path-selective rules.
#[derive(Debug, Default)]
pub(crate) struct Group {
    pub(crate) rules: Vec<CompiledRule>,
    /// For CUSTOM groups: the provider of each rule.
    pub(crate) providers: Vec<String>,
    // Looked up on every request; the keys come from policies, so the
    // faster seeded hash, not SipHash.
    by_principal: HashMap<String, Vec<usize>, foldhash::fast::RandomState>,
    by_path: HashMap<String, Vec<usize>, foldhash::fast::RandomState>,
    by_prefix: HashMap<String, Vec<usize>, foldhash::fast::RandomState>,
    /// Distinct key lengths of `by_prefix`, ascending.
    prefix_lens: Vec<usize>,
    linear: Vec<usize>,
}

fn exact_keys<'a, K>(
    clauses: Option<&'a Vec<Clause>>,
    key: impl Fn(&'a Matcher) -> Option<K>,
) -> Option<Vec<K>> {
    let mut keys = Vec::new();
    for clause in clauses? {
        let field = clause
            .fields
            .iter()
            .find(|f| !f.any.is_empty() && f.any.iter().all(|m| key(m).is_some()))?;
        keys.extend(field.any.iter().filter_map(&key));
    }
    Some(keys)
}

/// An indexable path value: exact, or a plain prefix (M-7).
#[derive(Debug, Clone, Copy)]
enum PathKey<'a> {
    Exact(&'a str),
    Prefix(&'a str),
}

fn path_key(m: &Matcher) -> Option<PathKey<'_>> {
    match m {
        Matcher::Path(PathMatch::Pattern(StrMatch::Exact(s))) => Some(PathKey::Exact(s)),
        Matcher::Path(PathMatch::Pattern(StrMatch::Prefix(s))) => Some(PathKey::Prefix(s)),
        _ => None,
    }
}

impl Group {
    fn push(&mut self, rule: CompiledRule, provider: Option<&str>) {
        self.rules.push(rule);
        self.providers.push(provider.unwrap_or_default().to_owned());
    }

    /// Builds the indexes; call once after the last `push`. A rule goes to
    /// the principal index when every `from` entry names exact principals,
    /// else to the path indexes when every `to` entry names exact or prefix
    /// paths, else to the scanned list. Lists stay in rule order.
    fn index(&mut self) {
        for (i, rule) in self.rules.iter().enumerate() {
            let principal = exact_keys(rule.from.as_ref(), |m| match m {
                Matcher::Principal(p) => p.exact(),
                _ => None,
            });
            let path = exact_keys(rule.to.as_ref(), path_key);
            if let Some(keys) = principal {
                for k in keys {
                    push_unique(self.by_principal.entry(k.to_owned()).or_default(), i);
                }
            } else if let Some(keys) = path {
                for k in keys {
                    let (map, key) = match k {
                        PathKey::Exact(k) => (&mut self.by_path, k),
                        PathKey::Prefix(k) => (&mut self.by_prefix, k),
                    };
                    push_unique(map.entry(key.to_owned()).or_default(), i);
                }
            } else {
                self.linear.push(i);
            }
        }
        self.prefix_lens = self.by_prefix.keys().map(String::len).collect();
        self.prefix_lens.sort_unstable();
        self.prefix_lens.dedup();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The lowest-numbered matching rule, so results never depend on hash order.
    pub(crate) fn first_match(&self, cx: &Ctx<'_>, indexed: bool) -> Option<usize> {
        if !indexed {
            return (0..self.rules.len()).find(|&i| self.rules[i].matches(cx));
        }
        let first_in = |list: &[usize]| list.iter().copied().find(|&i| self.rules[i].matches(cx));
        let by_principal = cx
            .peer
            .and_then(|p| self.by_principal.get(p.as_str()))
            .and_then(|l| first_in(l));
        let by_path = self.by_path.get(cx.path).and_then(|l| first_in(l));
        let by_prefix = self
            .prefix_lens
            .iter()
            .take_while(|&&len| len <= cx.path.len())
            .filter_map(|&len| cx.path.get(..len))
            .filter_map(|prefix| self.by_prefix.get(prefix))
            .filter_map(|l| first_in(l))
            .min();
        let linear = first_in(&self.linear);
        [by_principal, by_path, by_prefix, linear]
            .into_iter()
            .flatten()
            .min()
    }
}

fn push_unique(list: &mut Vec<usize>, i: usize) {
    if list.last() != Some(&i) {
        list.push(i);
    }
}

/// Everything the engine evaluates for one protocol.
#[derive(Debug, Default)]
pub(crate) struct Compiled {
    pub(crate) custom: Group,
    pub(crate) deny: Group,
    pub(crate) allow: Group,
    pub(crate) audit: Group,
    pub(crate) dry_allow: Group,
    pub(crate) dry_deny: Group,
    /// E-4: at least one enforced ALLOW policy applies (even one without rules).
    pub(crate) allow_present: bool,
    /// D-3: a dry-run ALLOW policy applies.
    pub(crate) dry_allow_present: bool,
    /// The request headers some rule reads, lowercase, sorted, each once:
    /// the HTTP layer copies only these out of a request. `None` when
    /// every header is wanted: an external authorizer (CUSTOM) is given
    /// the whole request.
    pub(crate) header_names: Option<Vec<String>>,
}

/// Compiles the applicable policies for HTTP and for TCP.
pub(crate) fn compile(
    policies: &[AuthorizationPolicy],
    workload: &Workload,
    mesh: &MeshConfig,
) -> (Compiled, Compiled) {
    let mut applicable: Vec<&AuthorizationPolicy> = policies
        .iter()
        .filter(|p| {
            applies(
                &p.namespace,
                p.selector.as_ref(),
                !p.target_refs.is_empty(),
                workload,
                mesh,
            )
        })
        .collect();
    applicable.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

    // E-2: one provider per workload unless the flag is set; unknown providers fail closed.
    let mut custom_providers: Vec<&str> = applicable
        .iter()
        .filter(|p| p.action == Action::Custom)
        .filter_map(|p| p.provider.as_deref())
        .collect();
    custom_providers.sort_unstable();
    custom_providers.dedup();
    let too_many = custom_providers.len() > 1 && !mesh.allow_multiple_custom_providers;

    let trust_domains = mesh.trust_domains();
    let mut http = Compiled::default();
    let mut tcp = Compiled::default();
    for policy in applicable {
        let provider = policy.provider.as_deref();
        let known = provider.and_then(|name| {
            mesh.extension_providers
                .iter()
                .find(|e| e.name == name)
                .map(|e| e.kind)
        });
        // A CUSTOM policy that cannot be served becomes DENY (E-2, fail closed).
        let action = match policy.action {
            Action::Custom if too_many || known.is_none() => Action::Deny,
            a => a,
        };
        let custom_on_tcp = known != Some(ProviderKind::Http);
        if action == Action::Allow {
            if policy.dry_run {
                http.dry_allow_present = true;
                tcp.dry_allow_present = true;
            } else {
                http.allow_present = true;
                tcp.allow_present = true;
            }
        }
        for (i, rule) in policy.rules.iter().enumerate() {
            let compiled = compile_rule(policy, i, rule, &trust_domains);
            if let Some(g) = select(&mut http, action, policy.dry_run) {
                g.push(compiled.clone(), provider);
            }
            let tcp_rule = match action {
                Action::Allow if compiled.mentions_http() => None,
                Action::Allow => Some(compiled),
                Action::Custom if !custom_on_tcp => None,
                _ => {
                    let mut r = compiled;
                    r.strip_http();
                    Some(r)
                }
            };
            if let (Some(r), Some(g)) = (tcp_rule, select(&mut tcp, action, policy.dry_run)) {
                g.push(r, provider);
            }
        }
    }
    for c in [&mut http, &mut tcp] {
        for g in [
            &mut c.custom,
            &mut c.deny,
            &mut c.allow,
            &mut c.audit,
            &mut c.dry_allow,
            &mut c.dry_deny,
        ] {
            g.index();
        }
        // With a CUSTOM rule every header is kept: nothing to collect.
        c.header_names = c.custom.rules.is_empty().then(|| {
            let mut names = Vec::new();
            for g in [&c.deny, &c.allow, &c.audit, &c.dry_allow, &c.dry_deny] {
                for rule in &g.rules {
                    rule.header_names(&mut names);
                }
            }
            names.sort_unstable();
            names.dedup();
            names
        });
    }
    (http, tcp)
}

fn select(c: &mut Compiled, action: Action, dry_run: bool) -> Option<&mut Group> {
    Some(match (action, dry_run) {
        (Action::Allow, false) => &mut c.allow,
        (Action::Allow, true) => &mut c.dry_allow,
        (Action::Deny, false) => &mut c.deny,
        (Action::Deny, true) => &mut c.dry_deny,
        // D-4: a dry-run CUSTOM policy still triggers the call, and the
        // provider's answer is enforced like any CUSTOM answer.
        (Action::Custom, _) => &mut c.custom,
        (Action::Audit, false) => &mut c.audit,
        (Action::Audit, true) => return None,
    })
}

fn compile_rule(
    policy: &AuthorizationPolicy,
    index: usize,
    rule: &Rule,
    trust_domains: &[String],
) -> CompiledRule {
    let ns = policy.namespace.as_str();
    CompiledRule {
        name: format!("ns[{ns}]-policy[{}]-rule[{index}]", policy.name),
        from: rule.from.as_ref().map(|sources| {
            sources
                .iter()
                .map(|s| source(s, ns, trust_domains))
                .collect()
        }),
        to: rule
            .to
            .as_ref()
            .map(|ops| ops.iter().map(operation).collect()),
        when: rule
            .when
            .iter()
            .map(|c| condition(c, ns, trust_domains))
            .collect(),
    }
}

fn field(pos: &[String], neg: &[String], f: impl Fn(&str) -> Option<Matcher>) -> Field {
    Field {
        any: pos.iter().filter_map(|v| f(v)).collect(),
        none: neg.iter().filter_map(|v| f(v)).collect(),
    }
}

fn push(fields: &mut Vec<Field>, f: Field) {
    if !f.is_empty() {
        fields.push(f);
    }
}

// Values were validated when loaded, so the `Cidr::parse(..)` calls below
// cannot fail; `filter_map` keeps that invariant panic-free.
fn source(s: &Source, ns: &str, tds: &[String]) -> Clause {
    let mut fields = Vec::new();
    let principal = |v: &str| Some(Matcher::Principal(identity::principal(v)));
    push(
        &mut fields,
        field(
            &identity::expand_principal_aliases(&s.principals, tds),
            &identity::expand_principal_aliases(&s.not_principals, tds),
            principal,
        ),
    );
    push(
        &mut fields,
        field(&s.request_principals, &s.not_request_principals, |v| {
            Some(Matcher::RequestPrincipal(RequestPrincipal::parse(v)))
        }),
    );
    push(
        &mut fields,
        field(&s.namespaces, &s.not_namespaces, |v| {
            Some(Matcher::Namespace(identity::namespace_pattern(v)))
        }),
    );
    let sa = |v: &str| {
        let (ns, sa) = identity::service_account(v, ns);
        Some(Matcher::ServiceAccount { ns, sa })
    };
    push(
        &mut fields,
        field(&s.service_accounts, &s.not_service_accounts, sa),
    );
    push(
        &mut fields,
        field(
            &identity::expand_trust_domains(&s.trust_domains, tds),
            &identity::expand_trust_domains(&s.not_trust_domains, tds),
            |v| Some(Matcher::TrustDomain(StrMatch::parse(v))),
        ),
    );
    push(
        &mut fields,
        field(&s.ip_blocks, &s.not_ip_blocks, |v| {
            Cidr::parse(v).map(Matcher::SourceIp)
        }),
    );
    push(
        &mut fields,
        field(&s.remote_ip_blocks, &s.not_remote_ip_blocks, |v| {
            Cidr::parse(v).map(Matcher::RemoteIp)
        }),
    );
    Clause { fields }
}

fn path_matcher(v: &str) -> Option<Matcher> {
    if is_template(v) {
        PathTemplate::parse(v)
            .ok()
            .map(|t| Matcher::Path(PathMatch::Template(t)))
    } else {
        Some(Matcher::Path(PathMatch::Pattern(StrMatch::parse(v))))
    }
}

fn operation(o: &Operation) -> Clause {
    let mut fields = Vec::new();
    push(
        &mut fields,
        field(&o.hosts, &o.not_hosts, |v| {
            Some(Matcher::Host(StrMatch::parse(v).lowercase()))
        }),
    );
    push(
        &mut fields,
        Field {
            any: o.ports.iter().map(|p| Matcher::Port(*p)).collect(),
            none: o.not_ports.iter().map(|p| Matcher::Port(*p)).collect(),
        },
    );
    push(
        &mut fields,
        field(&o.methods, &o.not_methods, |v| {
            Some(Matcher::Method(StrMatch::parse(v)))
        }),
    );
    push(&mut fields, field(&o.paths, &o.not_paths, path_matcher));
    Clause { fields }
}

fn condition(c: &Condition, ns: &str, tds: &[String]) -> Field {
    let key = &c.parsed;
    let one = |v: &str| -> Option<Matcher> {
        let pattern = || StrMatch::parse(v);
        Some(match key {
            ConditionKey::RequestHeader(name) => Matcher::Header(name.clone(), pattern()),
            ConditionKey::SourceIp => Matcher::SourceIp(Cidr::parse(v)?),
            ConditionKey::RemoteIp => Matcher::RemoteIp(Cidr::parse(v)?),
            ConditionKey::DestinationIp => Matcher::DestinationIp(Cidr::parse(v)?),
            ConditionKey::SourceNamespace => Matcher::Namespace(identity::namespace_pattern(v)),
            ConditionKey::SourcePrincipal => Matcher::Principal(identity::principal(v)),
            ConditionKey::SourceServiceAccount => {
                let (ns, sa) = identity::service_account(v, ns);
                Matcher::ServiceAccount { ns, sa }
            }
            ConditionKey::SourceTrustDomain => Matcher::TrustDomain(pattern()),
            ConditionKey::RequestAuthPrincipal => {
                Matcher::RequestPrincipal(RequestPrincipal::parse(v))
            }
            ConditionKey::RequestAuthAudiences => Matcher::Audience(pattern()),
            ConditionKey::RequestAuthPresenter => Matcher::Presenter(pattern()),
            ConditionKey::RequestAuthClaims(names) => Matcher::Claim(names.clone(), pattern()),
            ConditionKey::DestinationPort => Matcher::Port(v.parse().ok()?),
            ConditionKey::ConnectionSni => Matcher::Sni(pattern()),
        })
    };
    let (values, not_values) = match key {
        ConditionKey::SourcePrincipal => (
            identity::expand_principal_aliases(&c.values, tds),
            identity::expand_principal_aliases(&c.not_values, tds),
        ),
        ConditionKey::SourceTrustDomain => (
            identity::expand_trust_domains(&c.values, tds),
            identity::expand_trust_domains(&c.not_values, tds),
        ),
        _ => (c.values.clone(), c.not_values.clone()),
    };
    field(&values, &not_values, one)
}
