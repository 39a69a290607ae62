//! The demo's closing table: per edge, from the sidecars' own metrics.

use std::collections::BTreeMap;

/// One sample of a Prometheus text exposition.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// Parses the text format (`name{k="v",...} value`); comments and lines
/// that do not parse are skipped.
pub(crate) fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match head.split_once('{') {
        None => (head.to_owned(), BTreeMap::new()),
        Some((name, rest)) => (name.to_owned(), parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

fn parse_labels(mut s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => {
                    let (_, escaped) = chars.next()?;
                    value.push(if escaped == 'n' { '\n' } else { escaped });
                }
                '"' => break i,
                c => value.push(c),
            }
        };
        out.insert(key.trim_start_matches(',').to_owned(), value);
        s = rest[end + 1..].trim_start_matches(',');
    }
    Some(out)
}

/// Traffic of one edge (caller → service), as the destination reported it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Edge {
    pub(crate) requests: f64,
    pub(crate) denied: f64,
    buckets: BTreeMap<u64, f64>,
    count: f64,
}

impl Edge {
    /// The `q` quantile of the duration histogram, in milliseconds: the
    /// upper bound of the bucket it falls in.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0.0 {
            return None;
        }
        let want = self.count * q;
        self.buckets
            .iter()
            .find(|(_, c)| **c >= want)
            .map(|(le, _)| *le as f64 / 1000.0)
    }
}

/// Edges from the `reporter="destination"` samples of several sidecars.
pub(crate) fn edges(samples: &[Sample]) -> BTreeMap<(String, String), Edge> {
    let mut out: BTreeMap<(String, String), Edge> = BTreeMap::new();
    for s in samples {
        if s.labels.get("reporter").map(String::as_str) != Some("destination") {
            continue;
        }
        let from = s
            .labels
            .get("source_principal")
            .map(|p| short(p))
            .unwrap_or_default();
        let to = s
            .labels
            .get("destination_service_name")
            .cloned()
            .unwrap_or_default();
        let edge = out.entry((from, to)).or_default();
        match s.name.as_str() {
            "istio_requests_total" => {
                edge.requests += s.value;
                let code = s.labels.get("response_code").map(String::as_str);
                if matches!(code, Some("401" | "403")) {
                    edge.denied += s.value;
                }
            }
            "istio_request_duration_milliseconds_bucket" => {
                if let Some(le) = s.labels.get("le") {
                    // Milli-milliseconds keep the buckets' order as integers.
                    let key = if le == "+Inf" {
                        u64::MAX
                    } else {
                        le.parse::<f64>().map_or(u64::MAX, |v| (v * 1000.0) as u64)
                    };
                    *edge.buckets.entry(key).or_default() += s.value;
                }
            }
            "istio_request_duration_milliseconds_count" => edge.count += s.value,
            _ => {}
        }
    }
    out.retain(|_, e| e.requests > 0.0);
    out
}

/// `spiffe://cluster.local/ns/bookinfo/sa/reviews` → `reviews`.
pub(crate) fn short(principal: &str) -> String {
    if principal.contains("istio-ingressgateway") {
        return "ingress".to_owned();
    }
    principal
        .rsplit_once("/sa/")
        .map_or(principal, |(_, sa)| sa)
        .to_owned()
}

/// The table, one line per edge.
pub(crate) fn table(edges: &BTreeMap<(String, String), Edge>) -> String {
    let mut out = format!(
        "  {:<26} {:>8} {:>8} {:>7} {:>9} {:>9}\n",
        "edge", "requests", "allowed", "denied", "p50 ms", "p99 ms"
    );
    let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("<= {v}"));
    for ((from, to), e) in edges {
        out.push_str(&format!(
            "  {:<26} {:>8} {:>8} {:>7} {:>9} {:>9}\n",
            format!("{from} -> {to}"),
            e.requests,
            e.requests - e.denied,
            e.denied,
            fmt(e.quantile(0.5)),
            fmt(e.quantile(0.99)),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_with_escapes_and_reads_edges() {
        let text = r#"# HELP istio_requests_total x
istio_requests_total{reporter="destination",source_principal="spiffe://cluster.local/ns/bookinfo/sa/reviews",destination_service_name="ratings",response_code="200"} 3
istio_requests_total{reporter="destination",source_principal="spiffe://cluster.local/ns/bookinfo/sa/reviews",destination_service_name="ratings",response_code="403"} 1
istio_requests_total{reporter="source",source_principal="x",destination_service_name="ratings",response_code="200"} 9
istio_request_duration_milliseconds_bucket{reporter="destination",source_principal="spiffe://cluster.local/ns/bookinfo/sa/reviews",destination_service_name="ratings",le="1.0"} 2
istio_request_duration_milliseconds_bucket{reporter="destination",source_principal="spiffe://cluster.local/ns/bookinfo/sa/reviews",destination_service_name="ratings",le="5.0"} 4
istio_request_duration_milliseconds_bucket{reporter="destination",source_principal="spiffe://cluster.local/ns/bookinfo/sa/reviews",destination_service_name="ratings",le="+Inf"} 4
istio_request_duration_milliseconds_count{reporter="destination",source_principal="spiffe://cluster.local/ns/bookinfo/sa/reviews",destination_service_name="ratings"} 4
odd{a="q\"uote"} 1
"#;
        let samples = parse(text);
        assert_eq!(samples.last().unwrap().labels["a"], "q\"uote");
        let edges = edges(&samples);
        assert_eq!(edges.len(), 1, "source-reported samples are not edges");
        let e = &edges[&("reviews".to_owned(), "ratings".to_owned())];
        assert_eq!((e.requests, e.denied), (4.0, 1.0));
        assert_eq!(e.quantile(0.5), Some(1.0));
        assert_eq!(e.quantile(0.99), Some(5.0));
        assert!(table(&edges).contains("reviews -> ratings"));
    }
}
