//! `mesh-node federation`: the server's federation relationships, through
//! its admin socket (create, list, show, update, delete, refresh).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use http::Method;

use super::admin::{AdminFailure, call, decode, json, percent, print_one};
use super::{AdminArgs, Output};
use crate::admin_api::{RelationshipSpec, RelationshipView};

#[derive(Debug, Subcommand)]
pub(crate) enum FederationCommand {
    /// Trust another trust domain through its bundle endpoint.
    Create {
        /// The federated trust domain (never taken from the URL).
        #[arg(long)]
        trust_domain: String,
        #[command(flatten)]
        fields: RelationshipFields,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List the relationships.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show one relationship: its endpoint, last fetch, sequence and
    /// refusals.
    Show {
        /// The federated trust domain.
        trust_domain: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Change a relationship; fields not given keep their value.
    Update {
        /// The federated trust domain.
        trust_domain: String,
        #[command(flatten)]
        fields: RelationshipFields,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// End a relationship: its bundle leaves every agent and workload.
    Delete {
        /// The federated trust domain.
        trust_domain: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Fetch the trust domain's bundle now.
    Refresh {
        /// The federated trust domain.
        trust_domain: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Profile {
    /// The endpoint presents an X509-SVID.
    #[value(name = "https_spiffe")]
    HttpsSpiffe,
    /// The endpoint presents a Web PKI certificate.
    #[value(name = "https_web")]
    HttpsWeb,
}

/// The fields of `federation create` and `federation update`.
#[derive(Debug, Args)]
pub(crate) struct RelationshipFields {
    /// The bundle endpoint URL (https, no userinfo).
    #[arg(long)]
    url: Option<String>,
    /// How the endpoint is authenticated.
    #[arg(long, value_enum)]
    profile: Option<Profile>,
    /// https_spiffe: the SPIFFE ID the endpoint must present.
    #[arg(long)]
    endpoint_spiffe_id: Option<String>,
    /// https_spiffe: the trust domain's initial bundle (SPIFFE JSON or PEM).
    #[arg(long, value_name = "FILE")]
    bundle_file: Option<PathBuf>,
    /// https_web: PEM roots the endpoint's certificate must chain to.
    #[arg(long, value_name = "FILE")]
    web_roots: Option<PathBuf>,
    /// The shortest poll interval, e.g. `30s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    poll_floor: Option<std::time::Duration>,
}

fn read(path: Option<&Path>) -> Result<Option<String>, AdminFailure> {
    path.map(|p| {
        std::fs::read_to_string(p)
            .map_err(|e| AdminFailure::Server(format!("cannot read {}: {e}", p.display())))
    })
    .transpose()
}

impl RelationshipFields {
    fn spec(self, trust_domain: String) -> Result<RelationshipSpec, AdminFailure> {
        Ok(RelationshipSpec {
            trust_domain,
            url: self.url,
            profile: self.profile.map(|p| {
                match p {
                    Profile::HttpsSpiffe => "https_spiffe",
                    Profile::HttpsWeb => "https_web",
                }
                .to_owned()
            }),
            endpoint_spiffe_id: self.endpoint_spiffe_id,
            bundle: read(self.bundle_file.as_deref())?,
            web_roots: read(self.web_roots.as_deref())?,
            poll_floor: self.poll_floor.map(|d| d.as_secs().max(1)),
        })
    }
}

fn print_relationships(out: Output, rs: &[RelationshipView]) {
    print_one(out, &rs, |rs| {
        if rs.is_empty() {
            println!("no federation relationships");
        }
        for r in *rs {
            print_table(r);
        }
    });
}

fn print_table(r: &RelationshipView) {
    println!("Trust domain       : {}", r.trust_domain);
    println!("Bundle endpoint    : {}", r.url);
    println!("Profile            : {}", r.profile);
    if let Some(id) = &r.endpoint_spiffe_id {
        println!("Endpoint SPIFFE ID : {id}");
    }
    match r.last_fetch {
        Some(t) => println!("Last fetch         : {t} (Unix seconds)"),
        None => println!("Last fetch         : none since the server started"),
    }
    match r.sequence {
        Some(s) => println!("Sequence           : {s}"),
        None => println!("Sequence           : (no bundle)"),
    }
    println!(
        "Bundle             : {} X.509 authorities, {} JWT keys",
        r.x509_authorities, r.jwt_keys
    );
    println!("Accepted fetches   : {}", r.accepted);
    println!("Poll interval      : {}s", r.poll_interval);
    for (reason, n) in &r.refused {
        println!("Refused            : {reason}: {n}");
    }
    if let Some(e) = &r.last_error {
        println!("Last error         : {e}");
    }
    println!();
}

fn path(td: &str, suffix: &str) -> String {
    format!("/v1/federation/{}{suffix}", percent(td))
}

pub(crate) async fn execute(cmd: FederationCommand) -> Result<(), AdminFailure> {
    let (admin, view): (AdminArgs, RelationshipView) = match cmd {
        FederationCommand::List { admin } => {
            let b = call(&admin.target(), Method::GET, "/v1/federation", None).await?;
            let rs: Vec<RelationshipView> = decode(&b)?;
            print_relationships(admin.output, &rs);
            return Ok(());
        }
        FederationCommand::Create {
            trust_domain,
            fields,
            admin,
        } => {
            let spec = fields.spec(trust_domain)?;
            let b = call(
                &admin.target(),
                Method::POST,
                "/v1/federation",
                Some(json(&spec)),
            )
            .await?;
            (admin, decode(&b)?)
        }
        FederationCommand::Show {
            trust_domain,
            admin,
        } => {
            let b = call(&admin.target(), Method::GET, &path(&trust_domain, ""), None).await?;
            (admin, decode(&b)?)
        }
        FederationCommand::Update {
            trust_domain,
            fields,
            admin,
        } => {
            let spec = fields.spec(trust_domain.clone())?;
            let b = call(
                &admin.target(),
                Method::PUT,
                &path(&trust_domain, ""),
                Some(json(&spec)),
            )
            .await?;
            (admin, decode(&b)?)
        }
        FederationCommand::Delete {
            trust_domain,
            admin,
        } => {
            let b = call(
                &admin.target(),
                Method::DELETE,
                &path(&trust_domain, ""),
                None,
            )
            .await?;
            let r: RelationshipView = decode(&b)?;
            print_one(admin.output, &r, |r| {
                println!("deleted federation relationship with {}", r.trust_domain)
            });
            return Ok(());
        }
        FederationCommand::Refresh {
            trust_domain,
            admin,
        } => {
            let b = call(
                &admin.target(),
                Method::POST,
                &path(&trust_domain, "/refresh"),
                None,
            )
            .await?;
            (admin, decode(&b)?)
        }
    };
    print_one(admin.output, &view, print_table);
    Ok(())
}
