//! m0012_token_owner_fk on a real database: tokens whose owner is gone are dropped, the
//! others keep every column, and from then on deleting a user deletes their tokens and a
//! token cannot name a missing owner (or one of another tenant). SQLite by default,
//! PostgreSQL when SIGIL_TEST_DATABASE_URL is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::prelude::Uuid;
use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection, StatementBuilder};
use sigil_migrations::Migrator;

const TENANT_A: Uuid = Uuid::from_u128(0xa);
const TENANT_B: Uuid = Uuid::from_u128(0xb);
const ALICE: Uuid = Uuid::from_u128(0xa1);
const BOB: Uuid = Uuid::from_u128(0xb1);

#[derive(Iden)]
enum Tenants {
    Table,
    Id,
    Slug,
    Name,
    Enabled,
    Policy,
    CreatedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum Users {
    Table,
    Id,
    TenantId,
    Username,
    DisplayName,
    Kind,
    Role,
    ApiAccess,
    Active,
    IsSystem,
    CreatedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum Tokens {
    Table,
    Id,
    TenantId,
    OwnerId,
    Kind,
    Name,
    Description,
    ScopeSet,
    IpFilter,
    Enabled,
    Generation,
    SecretHash,
    CreatedAt,
    UpdatedAt,
    UseCount,
    Ceiling,
    RevokedReason,
    SelfRotatedFrom,
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}_{nanos}", std::process::id())
}

/// A fresh database: a new PostgreSQL database, or a SQLite file (removed on drop).
struct Fresh {
    db: DatabaseConnection,
    file: Option<std::path::PathBuf>,
}

impl Drop for Fresh {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", f.display()));
            }
        }
    }
}

async fn fresh() -> Fresh {
    match std::env::var("SIGIL_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        Some(base) => {
            let name = format!("sigil_m0012_{}", unique());
            let admin = Database::connect(&base).await.unwrap();
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            let (prefix, _) = base.rsplit_once('/').unwrap();
            Fresh {
                db: Database::connect(format!("{prefix}/{name}")).await.unwrap(),
                file: None,
            }
        }
        None => {
            let file = std::env::temp_dir().join(format!("sigil-m0012-{}.db", unique()));
            // sqlx turns SQLite's foreign keys on for every connection, as the server's.
            let db = Database::connect(format!("sqlite://{}?mode=rwc", file.display()))
                .await
                .unwrap();
            Fresh {
                db,
                file: Some(file),
            }
        }
    }
}

async fn run(db: &DatabaseConnection, stmt: &impl StatementBuilder) -> Result<u64, DbErr> {
    Ok(db
        .execute(db.get_database_backend().build(stmt))
        .await?
        .rows_affected())
}

async fn tenant(db: &DatabaseConnection, id: Uuid, slug: &str) {
    let insert = Query::insert()
        .into_table(Tenants::Table)
        .columns([
            Tenants::Id,
            Tenants::Slug,
            Tenants::Name,
            Tenants::Enabled,
            Tenants::Policy,
            Tenants::CreatedAt,
            Tenants::UpdatedAt,
        ])
        .values_panic([
            id.into(),
            slug.into(),
            slug.into(),
            true.into(),
            "{}".into(),
            Expr::current_timestamp().into(),
            Expr::current_timestamp().into(),
        ])
        .to_owned();
    run(db, &insert).await.unwrap();
}

async fn user(db: &DatabaseConnection, id: Uuid, tenant: Uuid, username: &str) {
    let insert = Query::insert()
        .into_table(Users::Table)
        .columns([
            Users::Id,
            Users::TenantId,
            Users::Username,
            Users::DisplayName,
            Users::Kind,
            Users::Role,
            Users::ApiAccess,
            Users::Active,
            Users::IsSystem,
            Users::CreatedAt,
            Users::UpdatedAt,
        ])
        .values_panic([
            id.into(),
            tenant.into(),
            username.into(),
            username.into(),
            "person".into(),
            "member".into(),
            true.into(),
            true.into(),
            false.into(),
            Expr::current_timestamp().into(),
            Expr::current_timestamp().into(),
        ])
        .to_owned();
    run(db, &insert).await.unwrap();
}

async fn token(db: &DatabaseConnection, id: u128, tenant: Uuid, owner: Uuid) -> Result<u64, DbErr> {
    let insert = Query::insert()
        .into_table(Tokens::Table)
        .columns([
            Tokens::Id,
            Tokens::TenantId,
            Tokens::OwnerId,
            Tokens::Kind,
            Tokens::Name,
            Tokens::Description,
            Tokens::ScopeSet,
            Tokens::IpFilter,
            Tokens::Enabled,
            Tokens::Generation,
            Tokens::SecretHash,
            Tokens::CreatedAt,
            Tokens::UpdatedAt,
            Tokens::UseCount,
            Tokens::Ceiling,
            Tokens::RevokedReason,
            Tokens::SelfRotatedFrom,
        ])
        .values_panic([
            Uuid::from_u128(id).into(),
            tenant.into(),
            owner.into(),
            "personal".into(),
            format!("token {id}").into(),
            "kept as it was".into(),
            "read-only".into(),
            "[\"10.0.0.0/8\"]".into(),
            true.into(),
            3.into(),
            "0".repeat(64).into(),
            Expr::current_timestamp().into(),
            Expr::current_timestamp().into(),
            7i64.into(),
            "[\"tokens.list\"]".into(),
            "leaked".into(),
            2.into(),
        ])
        .to_owned();
    run(db, &insert).await
}

/// The ids of the stored tokens, in order, with the columns the rebuild must keep.
async fn tokens(db: &DatabaseConnection) -> Vec<(Uuid, String, String, i32, i64, String, i32)> {
    let select = Query::select()
        .columns([
            Tokens::Id,
            Tokens::Description,
            Tokens::IpFilter,
            Tokens::Generation,
            Tokens::UseCount,
            Tokens::Ceiling,
            Tokens::SelfRotatedFrom,
        ])
        .from(Tokens::Table)
        .order_by(Tokens::Id, Order::Asc)
        .to_owned();
    let backend = db.get_database_backend();
    db.query_all(backend.build(&select))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get("", "id").unwrap(),
                r.try_get("", "description").unwrap(),
                r.try_get("", "ip_filter").unwrap(),
                r.try_get("", "generation").unwrap(),
                r.try_get("", "use_count").unwrap(),
                r.try_get("", "ceiling").unwrap(),
                r.try_get("", "self_rotated_from").unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn m0012_ties_tokens_to_their_owner() {
    let fresh = fresh().await;
    let db = &fresh.db;
    Migrator::up(db, Some(11)).await.unwrap();
    let pending = Migrator::get_pending_migrations(db).await.unwrap();
    assert_eq!(
        pending.first().map(|m| m.name().to_owned()).as_deref(),
        Some("m0012_token_owner_fk")
    );

    tenant(db, TENANT_A, "a").await;
    tenant(db, TENANT_B, "b").await;
    user(db, ALICE, TENANT_A, "alice").await;
    user(db, BOB, TENANT_B, "bob").await;
    token(db, 1, TENANT_A, ALICE).await.unwrap();
    token(db, 2, TENANT_A, ALICE).await.unwrap();
    token(db, 3, TENANT_B, BOB).await.unwrap();
    // Left behind by a deleted user, and one naming an owner of another tenant.
    token(db, 4, TENANT_A, Uuid::from_u128(0xdead))
        .await
        .unwrap();
    token(db, 5, TENANT_A, BOB).await.unwrap();

    Migrator::up(db, Some(1)).await.unwrap();

    let kept = tokens(db).await;
    let ids: Vec<Uuid> = kept.iter().map(|t| t.0).collect();
    assert_eq!(ids, [1, 2, 3].map(Uuid::from_u128));
    let (_, description, ip_filter, generation, use_count, ceiling, rotated) = &kept[0];
    assert_eq!(
        (
            description.clone(),
            ip_filter.clone(),
            *generation,
            *use_count,
            ceiling.clone(),
            *rotated
        ),
        (
            "kept as it was".to_owned(),
            "[\"10.0.0.0/8\"]".to_owned(),
            3,
            7,
            "[\"tokens.list\"]".to_owned(),
            2
        )
    );

    // A missing owner, or one of another tenant, is refused.
    assert!(token(db, 6, TENANT_A, Uuid::from_u128(0xbeef))
        .await
        .is_err());
    assert!(token(db, 7, TENANT_B, ALICE).await.is_err());
    token(db, 8, TENANT_B, BOB).await.unwrap();

    // Deleting a user deletes their tokens, and no one else's.
    let delete = Query::delete()
        .from_table(Users::Table)
        .and_where(Expr::col(Users::Id).eq(ALICE))
        .to_owned();
    assert_eq!(run(db, &delete).await.unwrap(), 1);
    let ids: Vec<Uuid> = tokens(db).await.iter().map(|t| t.0).collect();
    assert_eq!(ids, [3, 8].map(Uuid::from_u128));

    // And back: the key goes, the tokens stay.
    Migrator::down(db, Some(1)).await.unwrap();
    token(db, 9, TENANT_A, Uuid::from_u128(0xbeef))
        .await
        .unwrap();
    let ids: Vec<Uuid> = tokens(db).await.iter().map(|t| t.0).collect();
    assert_eq!(ids, [3, 8, 9].map(Uuid::from_u128));
}
