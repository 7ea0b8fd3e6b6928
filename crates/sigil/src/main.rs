//! The `sigil` command: run the server, migrate, print the spec, and administer tenants.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sigil_server::app;
use sigil_server::config::Config;

#[derive(Parser)]
#[command(name = "sigil", version, about = "Sigil: multi-tenant API tokens", long_about = None)]
struct Cli {
    /// TOML configuration file (environment variables SIGIL_* override it).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (migrates the database first).
    Serve {
        /// Plugin manifest (JSON) to register at start; repeatable.
        #[arg(long = "plugin", value_name = "FILE")]
        plugins: Vec<PathBuf>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Platform operator credentials.
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and its first admin; prints JSON with the admin's password.
    Create {
        /// Lowercase identifier used at login.
        slug: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "admin")]
        admin_username: String,
        /// Read the admin password from standard input instead of generating one.
        #[arg(long)]
        admin_password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Print a short-lived operator token for the tenant administration API.
    Token {
        /// Lifetime, e.g. 15m, 1h, 3600s (at most 24h).
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
    },
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 15m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("unknown unit {unit:?}; use s, m or h")),
    };
    if secs == 0 || secs > 86_400 {
        return Err("the lifetime must be between 1s and 24h".into());
    }
    Ok(Duration::from_secs(secs))
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("sigil: {message}");
    ExitCode::from(code)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(2, e),
    };
    let telemetry = sigil_server::telemetry::init(&config.log_format, &config.log_level);
    let code = run(cli.command, config).await;
    // Exports what is still queued (spans, metrics) when OTLP export is on.
    telemetry.shutdown().await;
    code
}

async fn run(command: Command, mut config: Config) -> ExitCode {
    match command {
        Command::Serve { plugins } => {
            config.plugins.extend(plugins);
            let prepared = match sigil_server::prepare(config).await {
                Ok(p) => p,
                Err(e) => return fail(1, e),
            };
            match sigil_server::serve(prepared).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(1, e),
            }
        }
        Command::Migrate => {
            let db = match sigil_server::open_database(&config).await {
                Ok(db) => db,
                Err(e) => return fail(1, e),
            };
            match sigil_server::run::migrate(&db).await {
                Ok(()) => {
                    println!("migrations applied");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, e),
            }
        }
        Command::Openapi => {
            // The spec comes from the code; an in-memory database stands in for storage.
            config.database_url = "sqlite::memory:".into();
            config.master_key = sigil_core::crypto::MasterKey::generate().to_base64();
            config.db_max_connections = 1;
            match sigil_server::prepare(config).await {
                Ok(p) => {
                    print!("{}", app::spec_text(&p.app.spec));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, e),
            }
        }
        Command::Tenant {
            command:
                TenantCommand::Create {
                    slug,
                    name,
                    admin_username,
                    admin_password_stdin,
                },
        } => {
            let password = if admin_password_stdin {
                let mut text = String::new();
                if let Err(e) = std::io::stdin().read_to_string(&mut text) {
                    return fail(1, format!("cannot read the password from stdin: {e}"));
                }
                Some(text.trim_end_matches(['\r', '\n']).to_owned())
            } else {
                None
            };
            let prepared = match sigil_server::prepare(config).await {
                Ok(p) => p,
                Err(e) => return fail(1, e),
            };
            let s = &prepared.state;
            let result = sigil_user::onboard_tenant(
                &s.db,
                &s.tenants,
                &s.keys,
                &s.users,
                sigil_tenant::NewTenant {
                    slug,
                    name,
                    policy: None,
                },
                Some(admin_username),
                password,
            )
            .await;
            match result {
                Ok(o) => {
                    let out = serde_json::json!({
                        "tenant": {"id": o.tenant.id, "slug": o.tenant.slug, "name": o.tenant.name},
                        "admin_username": o.admin.username,
                        "admin_password": o.admin_password,
                    });
                    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, describe(&e)),
            }
        }
        Command::Operator {
            command: OperatorCommand::Token { ttl },
        } => {
            let prepared = match sigil_server::prepare(config).await {
                Ok(p) => p,
                Err(e) => return fail(1, e),
            };
            match prepared.state.platform.issue(ttl) {
                Ok((token, _)) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, e),
            }
        }
    }
}

fn describe(e: &sigil_core::Error) -> String {
    match e {
        sigil_core::Error::Invalid { detail, errors, .. } if !errors.is_empty() => {
            format!("{detail}: {}", errors.join("; "))
        }
        other => other.to_string(),
    }
}
