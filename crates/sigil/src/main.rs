//! The `sigil` command: run the server, migrate, print the spec, administer tenants, and
//! issue and revoke operator tokens. Only `serve`, `migrate` and `tenant create --init`
//! create a database; the other commands use the one the settings name, or stop.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Parser, Subcommand};
use sigil_server::app;
use sigil_server::config::Config;
use sigil_server::run::require_existing_data;

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
    /// Create the database (when missing) or apply pending migrations, and exit.
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
    ///
    /// Uses the server's data (the same settings as `serve`: working directory,
    /// SIGIL_DATA_DIR, SIGIL_DATABASE_URL, SIGIL_MASTER_KEY, --config) and stops when there
    /// is none, unless --init is given.
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
        /// Create the database and master key when they do not exist yet (a new
        /// installation; `sigil serve` creates them on its first start too).
        #[arg(long)]
        init: bool,
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
    /// Revoke operator tokens: every one issued so far, or one. Running replicas refuse
    /// them within a few seconds.
    #[command(group(ArgGroup::new("which").required(true).multiple(false)))]
    Revoke {
        /// Every operator token issued before now.
        #[arg(long, group = "which")]
        all: bool,
        /// The token with this id (its `jti` claim).
        #[arg(long, group = "which", value_name = "JTI")]
        jti: Option<String>,
        /// This token (its signature is checked); `-` reads it from standard input.
        #[arg(long, group = "which", value_name = "TOKEN")]
        token: Option<String>,
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

/// How operator commands can get data: from a server that has started once.
const OPERATOR_HINT: &str = "start `sigil serve` once to create the database";

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
                    init,
                },
        } => {
            if !init {
                let hint = "add --init to start a new installation with these settings";
                if let Err(message) = require_existing_data(&config, hint).await {
                    return fail(1, message);
                }
            }
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
            if let Err(message) = require_existing_data(&config, OPERATOR_HINT).await {
                return fail(1, message);
            }
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
        Command::Operator {
            command: OperatorCommand::Revoke { all, jti, token },
        } => {
            let token = match token.as_deref() {
                Some("-") => {
                    let mut text = String::new();
                    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
                        return fail(1, format!("cannot read the token from stdin: {e}"));
                    }
                    Some(text.trim().to_owned())
                }
                other => other.map(str::to_owned),
            };
            if let Err(message) = require_existing_data(&config, OPERATOR_HINT).await {
                return fail(1, message);
            }
            let prepared = match sigil_server::prepare(config).await {
                Ok(p) => p,
                Err(e) => return fail(1, e),
            };
            revoke_operator_tokens(&prepared.state.platform, all, jti, token).await
        }
    }
}

/// `sigil operator revoke`: stores the revocation and prints what was revoked as JSON.
async fn revoke_operator_tokens(
    platform: &sigil_tenant::platform::PlatformKey,
    all: bool,
    jti: Option<String>,
    token: Option<String>,
) -> ExitCode {
    let out = if all {
        let not_before = match platform.revoke_all().await {
            Ok(t) => t,
            Err(e) => return fail(1, describe(&e)),
        };
        // Tokens carry whole seconds: one issued before `not_before` is refused, so wait
        // for it (under a second) and a token issued after this command returns works.
        let wait_ms = not_before.saturating_mul(1000) - now_ms();
        if let Ok(wait_ms) = u64::try_from(wait_ms) {
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        }
        serde_json::json!({"revoked": "all", "not_before": not_before})
    } else {
        let revoked = match (jti, token) {
            (Some(jti), _) => {
                let jti = jti.trim().to_owned();
                platform.revoke_id(&jti).await.map(|()| jti)
            }
            (None, Some(token)) => platform.revoke_token(&token).await,
            (None, None) => return fail(2, "give --all, --jti or --token"),
        };
        match revoked {
            Ok(jti) => serde_json::json!({"revoked": jti}),
            Err(e) => return fail(1, describe(&e)),
        }
    };
    println!("{out}");
    eprintln!(
        "sigil: running replicas refuse the revoked operator tokens within {}s",
        sigil_tenant::platform::REFRESH_EVERY.as_secs()
    );
    ExitCode::SUCCESS
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn describe(e: &sigil_core::Error) -> String {
    match e {
        sigil_core::Error::Invalid { detail, errors, .. } if !errors.is_empty() => {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            format!("{detail}: {}", errors.join("; "))
        }
        other => other.to_string(),
    }
}
