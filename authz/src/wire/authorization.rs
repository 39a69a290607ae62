//! `AuthorizationPolicy` documents → [`AuthorizationPolicy`].

use super::common::{self, Metadata};
use crate::cidr::Cidr;
use crate::condition::ConditionKey;
use crate::error::ValidationKind;
use crate::model::{Action, AuthorizationPolicy, Condition, Operation, Rule, Source};
use crate::node::{Node, VResult};
use crate::template::{PathTemplate, is_template};

pub(crate) fn convert(
    meta: Metadata,
    spec: &Node<'_>,
    warnings: &mut Vec<(String, String)>,
) -> VResult<AuthorizationPolicy> {
    spec.only_keys(&[
        "selector",
        "targetRef",
        "targetRefs",
        "action",
        "provider",
        "rules",
    ])?;
    let selector = common::selector(spec, warnings)?;
    let target_refs = common::target_refs(spec)?;
    if selector.is_some() && !target_refs.is_empty() {
        return Err(super::at(
            "spec.selector",
            ValidationKind::Conflict {
                other: "targetRefs",
            },
        ));
    }
    let action = match spec.get("action")? {
        None => Action::Allow,
        Some(a) => match a.str()? {
            "ALLOW" => Action::Allow,
            "DENY" => Action::Deny,
            "AUDIT" => Action::Audit,
            "CUSTOM" => Action::Custom,
            other => {
                return Err(a.err(ValidationKind::BadAction {
                    value: other.to_owned(),
                }));
            }
        },
    };
    let provider = match spec.get("provider")? {
        None => None,
        Some(p) => {
            if action != Action::Custom {
                return Err(p.err(ValidationKind::Rule(
                    "`provider` is only allowed with action CUSTOM",
                )));
            }
            p.only_keys(&["name"])?;
            Some(p.require("name")?.non_empty_str()?.to_owned())
        }
    };
    if action == Action::Custom && provider.is_none() {
        return Err(super::at("spec.provider.name", ValidationKind::Missing));
    }
    let mut rules = Vec::new();
    if let Some(list) = spec.get("rules")? {
        for item in list.items()? {
            if item.value.is_null() {
                return Err(item.err(ValidationKind::Null));
            }
            rules.push(rule(&item, action)?);
        }
    }
    if rules.is_empty() && matches!(action, Action::Deny | Action::Custom) {
        return Err(super::at(
            "spec.rules",
            ValidationKind::Rule("a DENY or CUSTOM policy without rules is meaningless"),
        ));
    }
    if action == Action::Deny {
        for (i, r) in rules.iter().enumerate() {
            if rule_is_http_only(r) {
                warnings.push((
                    format!("spec.rules[{i}]"),
                    "DENY rule uses only HTTP attributes; it will deny all traffic to TCP ports"
                        .to_owned(),
                ));
            }
        }
    }
    let dry_run = match meta.dry_run.as_deref() {
        None => false,
        Some(raw) => common::parse_go_bool(raw).unwrap_or_else(|| {
            warnings.push((
                meta.dry_run_path.clone(),
                format!("cannot parse `{raw}` as a boolean; the policy is enforced"),
            ));
            false
        }),
    };
    Ok(AuthorizationPolicy {
        name: meta.name,
        namespace: meta.namespace,
        selector,
        target_refs,
        action,
        provider,
        rules,
        dry_run,
    })
}

/// V-2: every constraint of the rule is HTTP-only (and there is at least one).
fn rule_is_http_only(r: &Rule) -> bool {
    let src_http = |s: &Source| {
        let tcp = !(s.principals.is_empty()
            && s.not_principals.is_empty()
            && s.namespaces.is_empty()
            && s.not_namespaces.is_empty()
            && s.service_accounts.is_empty()
            && s.not_service_accounts.is_empty()
            && s.trust_domains.is_empty()
            && s.not_trust_domains.is_empty()
            && s.ip_blocks.is_empty()
            && s.not_ip_blocks.is_empty()
            && s.remote_ip_blocks.is_empty()
            && s.not_remote_ip_blocks.is_empty());
        !tcp
    };
    let op_http = |o: &Operation| o.ports.is_empty() && o.not_ports.is_empty();
    let from_http = r.from.as_ref().is_none_or(|f| f.iter().all(src_http));
    let to_http = r.to.as_ref().is_none_or(|t| t.iter().all(op_http));
    let when_http = r.when.iter().all(|c| c.parsed.http_only());
    let any = r.from.is_some() || r.to.is_some() || !r.when.is_empty();
    any && from_http && to_http && when_http
}

fn rule(node: &Node<'_>, action: Action) -> VResult<Rule> {
    node.only_keys(&["from", "to", "when"])?;
    let mut out = Rule::default();
    if let Some(from) = node.get("from")? {
        let mut sources = Vec::new();
        for item in from.items()? {
            if item.value.is_null() {
                return Err(item.err(ValidationKind::Null));
            }
            item.only_keys(&["source"])?;
            let src = match item.get("source")? {
                Some(s) => s,
                None => {
                    return Err(super::at(
                        &format!("{}.source", item.path),
                        ValidationKind::Empty,
                    ));
                }
            };
            sources.push(source(&src, action)?);
        }
        if sources.is_empty() {
            return Err(from.err(ValidationKind::Empty));
        }
        out.from = Some(sources);
    } else if node.has_key("from") {
        return Err(super::at(&field(node, "from"), ValidationKind::Null));
    }
    if let Some(to) = node.get("to")? {
        let mut ops = Vec::new();
        for item in to.items()? {
            if item.value.is_null() {
                return Err(item.err(ValidationKind::Null));
            }
            item.only_keys(&["operation"])?;
            let op = match item.get("operation")? {
                Some(o) => o,
                None => {
                    return Err(super::at(
                        &format!("{}.operation", item.path),
                        ValidationKind::Empty,
                    ));
                }
            };
            ops.push(operation(&op)?);
        }
        if ops.is_empty() {
            return Err(to.err(ValidationKind::Empty));
        }
        out.to = Some(ops);
    } else if node.has_key("to") {
        return Err(super::at(&field(node, "to"), ValidationKind::Null));
    }
    if let Some(when) = node.get("when")? {
        for item in when.items()? {
            out.when.push(condition(&item, action)?);
        }
    }
    Ok(out)
}

fn field(node: &Node<'_>, key: &str) -> String {
    format!("{}.{key}", node.path)
}

fn cidrs(node: &Node<'_>, key: &str) -> VResult<Vec<String>> {
    let Some(list) = node.get(key)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in list.items()? {
        let v = item.non_empty_str()?;
        if Cidr::parse(v).is_none() {
            return Err(item.err(ValidationKind::BadCidr {
                value: v.to_owned(),
            }));
        }
        out.push(v.to_owned());
    }
    Ok(out)
}

fn service_accounts(node: &Node<'_>, key: &str) -> VResult<Vec<String>> {
    let Some(list) = node.get(key)? else {
        return Ok(Vec::new());
    };
    let items = list.items()?;
    if items.len() > 16 {
        return Err(list.err(ValidationKind::TooMany { max: 16 }));
    }
    let mut out = Vec::new();
    for item in items {
        let v = item.non_empty_str()?;
        let why = if v.len() > 320 {
            Some("longer than 320 characters")
        } else if v.contains('*') {
            Some("service accounts do not support wildcards")
        } else if !valid_service_account(v) {
            Some("expected `namespace/name` or `name`")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(item.err(ValidationKind::BadValue {
                value: v.to_owned(),
                why,
            }));
        }
        out.push(v.to_owned());
    }
    Ok(out)
}

fn valid_service_account(v: &str) -> bool {
    match v.split_once('/') {
        Some((ns, sa)) => !ns.is_empty() && !sa.is_empty() && !sa.contains('/'),
        None => true,
    }
}

/// Trust-domain values: no `/`, at most one `*`, only at an end (V-1).
pub(crate) fn trust_domain_value_error(v: &str) -> Option<&'static str> {
    let stars = v.matches('*').count();
    if v.contains('/') {
        Some("a trust domain cannot contain `/`")
    } else if stars > 1 {
        Some("at most one `*` is allowed")
    } else if stars == 1 && !(v.starts_with('*') || v.ends_with('*')) {
        Some("`*` is only allowed at the start or the end")
    } else {
        None
    }
}

fn trust_domains(node: &Node<'_>, key: &str) -> VResult<Vec<String>> {
    let Some(list) = node.get(key)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in list.items()? {
        let v = item.non_empty_str()?;
        if let Some(why) = trust_domain_value_error(v) {
            return Err(item.err(ValidationKind::BadValue {
                value: v.to_owned(),
                why,
            }));
        }
        out.push(v.to_owned());
    }
    Ok(out)
}

const IDENTITY_FIELDS: [&str; 10] = [
    "principals",
    "notPrincipals",
    "namespaces",
    "notNamespaces",
    "serviceAccounts",
    "notServiceAccounts",
    "trustDomains",
    "notTrustDomains",
    "requestPrincipals",
    "notRequestPrincipals",
];

fn source(node: &Node<'_>, action: Action) -> VResult<Source> {
    node.only_keys(&[
        "principals",
        "notPrincipals",
        "requestPrincipals",
        "notRequestPrincipals",
        "namespaces",
        "notNamespaces",
        "serviceAccounts",
        "notServiceAccounts",
        "trustDomains",
        "notTrustDomains",
        "ipBlocks",
        "notIpBlocks",
        "remoteIpBlocks",
        "notRemoteIpBlocks",
    ])?;
    if action == Action::Custom {
        for key in IDENTITY_FIELDS {
            if node.get(key)?.is_some() {
                return Err(super::at(
                    &field(node, key),
                    ValidationKind::Rule("CUSTOM rules cannot use identity fields"),
                ));
            }
        }
    }
    let s = Source {
        principals: node.opt_str_list("principals")?,
        not_principals: node.opt_str_list("notPrincipals")?,
        request_principals: node.opt_str_list("requestPrincipals")?,
        not_request_principals: node.opt_str_list("notRequestPrincipals")?,
        namespaces: node.opt_str_list("namespaces")?,
        not_namespaces: node.opt_str_list("notNamespaces")?,
        service_accounts: service_accounts(node, "serviceAccounts")?,
        not_service_accounts: service_accounts(node, "notServiceAccounts")?,
        trust_domains: trust_domains(node, "trustDomains")?,
        not_trust_domains: trust_domains(node, "notTrustDomains")?,
        ip_blocks: cidrs(node, "ipBlocks")?,
        not_ip_blocks: cidrs(node, "notIpBlocks")?,
        remote_ip_blocks: cidrs(node, "remoteIpBlocks")?,
        not_remote_ip_blocks: cidrs(node, "notRemoteIpBlocks")?,
    };
    let uses_sa = !s.service_accounts.is_empty() || !s.not_service_accounts.is_empty();
    let uses_pn = !s.principals.is_empty()
        || !s.not_principals.is_empty()
        || !s.namespaces.is_empty()
        || !s.not_namespaces.is_empty();
    if uses_sa && uses_pn {
        return Err(super::at(
            &field(node, "serviceAccounts"),
            ValidationKind::Conflict {
                other: "principals/namespaces",
            },
        ));
    }
    if s == Source::default() {
        return Err(node.err(ValidationKind::Empty));
    }
    Ok(s)
}

fn ports(node: &Node<'_>, key: &str) -> VResult<Vec<u16>> {
    let Some(list) = node.get(key)? else {
        return Ok(Vec::new());
    };
    list.items()?
        .iter()
        .map(|item| common::port(item, 0))
        .collect()
}

fn paths(node: &Node<'_>, key: &str) -> VResult<Vec<String>> {
    let Some(list) = node.get(key)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in list.items()? {
        let v = item.non_empty_str()?;
        if is_template(v) {
            PathTemplate::parse(v).map_err(|why| {
                item.err(ValidationKind::BadValue {
                    value: v.to_owned(),
                    why,
                })
            })?;
        }
        out.push(v.to_owned());
    }
    Ok(out)
}

fn operation(node: &Node<'_>) -> VResult<Operation> {
    node.only_keys(&[
        "hosts",
        "notHosts",
        "ports",
        "notPorts",
        "methods",
        "notMethods",
        "paths",
        "notPaths",
    ])?;
    let op = Operation {
        hosts: node.opt_str_list("hosts")?,
        not_hosts: node.opt_str_list("notHosts")?,
        ports: ports(node, "ports")?,
        not_ports: ports(node, "notPorts")?,
        methods: node.opt_str_list("methods")?,
        not_methods: node.opt_str_list("notMethods")?,
        paths: paths(node, "paths")?,
        not_paths: paths(node, "notPaths")?,
    };
    if op == Operation::default() {
        return Err(node.err(ValidationKind::Empty));
    }
    Ok(op)
}

fn condition(node: &Node<'_>, action: Action) -> VResult<Condition> {
    if node.value.is_null() {
        return Err(node.err(ValidationKind::Null));
    }
    node.only_keys(&["key", "values", "notValues"])?;
    let key_node = node.require("key")?;
    let key = key_node.non_empty_str()?;
    let parsed = ConditionKey::parse(key).map_err(|k| key_node.err(k))?;
    if action == Action::Custom && parsed.reads_identity() {
        return Err(key_node.err(ValidationKind::Rule(
            "CUSTOM rules cannot use identity conditions",
        )));
    }
    let values = node.opt_str_list("values")?;
    let not_values = node.opt_str_list("notValues")?;
    if values.is_empty() && not_values.is_empty() {
        return Err(node.err(ValidationKind::Rule(
            "a condition needs `values` or `notValues`",
        )));
    }
    for (list, name) in [(&values, "values"), (&not_values, "notValues")] {
        for (i, v) in list.iter().enumerate() {
            let why = match parsed {
                ConditionKey::SourceIp | ConditionKey::RemoteIp | ConditionKey::DestinationIp => {
                    Cidr::parse(v)
                        .is_none()
                        .then_some("not an IP address or CIDR block")
                }
                ConditionKey::DestinationPort => common::parse_port(v, 0)
                    .is_none()
                    .then_some("not a port in 0-65535"),
                ConditionKey::SourceServiceAccount => (v.contains('*')
                    || !valid_service_account(v))
                .then_some("expected `namespace/name` or `name` without wildcards"),
                ConditionKey::SourceTrustDomain => trust_domain_value_error(v),
                _ => None,
            };
            if let Some(why) = why {
                return Err(super::at(
                    &format!("{}.{name}[{i}]", node.path),
                    ValidationKind::BadValue {
                        value: v.clone(),
                        why,
                    },
                ));
            }
        }
    }
    Ok(Condition {
        key: key.to_owned(),
        values,
        not_values,
        parsed,
    })
}
