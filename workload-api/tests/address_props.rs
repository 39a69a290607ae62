//! Property tests for the EP-6 address parser: it never panics, and what it
//! accepts displays to a form that parses back to the same address.

use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;
use workload_api::EndpointAddress;

proptest! {
    #[test]
    fn ep_6_parser_never_panics(s in "\\PC{0,64}") {
        let _ = s.parse::<EndpointAddress>();
    }

    #[test]
    fn ep_6_parser_never_panics_near_valid_forms(
        scheme in "(unix|tcp|UNIX|Tcp|http)",
        sep in "(:|://|:/|:///)",
        rest in "[a-z0-9/%.:\\[\\]@?#-]{0,32}",
    ) {
        if let Ok(a) = format!("{scheme}{sep}{rest}").parse::<EndpointAddress>() {
            prop_assert_eq!(a.to_string().parse::<EndpointAddress>(), Ok(a));
        }
    }

    #[test]
    /// Control characters (C0, DEL, C1) are rejected by the parser, so
    /// the generator leaves them out.
    fn ep_6_unix_paths_round_trip(segments in proptest::collection::vec("[^\\x00-\\x1f\\x7f-\\u{9f}/]{1,12}", 1..5)) {
        let path = format!("/{}", segments.join("/"));
        let a = EndpointAddress::Unix(path.clone().into());
        prop_assert_eq!(a.to_string().parse::<EndpointAddress>(), Ok(a));
    }

    #[test]
    fn ep_6_tcp_addresses_round_trip(ip in any::<IpAddr>(), port in 1u16..) {
        let a = EndpointAddress::Tcp(SocketAddr::new(ip, port));
        prop_assert_eq!(a.to_string().parse::<EndpointAddress>(), Ok(a));
    }
}
