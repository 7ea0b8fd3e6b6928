//! What a signed-in user reads about themselves on every page of the console and in every
//! `getCurrentUser`: the user and their recovery codes left. Cached by user and dropped
//! by the change feed (here and on every replica) when the user, their two-factor state
//! or their tenant changes, so a read needs no database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use sigil_core::changes::{Change, ChangeFeed};
use sigil_core::{Result, TenantId, UserId};

use crate::{TwoFactorService, User, UserService};

/// A user as they see themselves.
#[derive(Clone, Debug)]
pub struct Profile {
    pub user: User,
    /// Unused recovery codes; `None` without two-factor sign-in.
    pub recovery_codes_left: Option<u64>,
}

#[derive(Clone)]
pub struct Profiles {
    users: UserService,
    two_factor: TwoFactorService,
    cache: Cache<UserId, Arc<Profile>>,
    /// Moves on every change that drops profiles: a read that started before a change
    /// is answered but not kept.
    epoch: Arc<AtomicU64>,
}

impl Profiles {
    pub fn new(
        users: UserService,
        two_factor: TwoFactorService,
        changes: &ChangeFeed,
        max_entries: u64,
        ttl: Duration,
    ) -> Self {
        let cache: Cache<UserId, Arc<Profile>> = Cache::builder()
            .max_capacity(max_entries)
            .time_to_live(ttl)
            .build();
        let epoch = Arc::new(AtomicU64::new(0));
        {
            let (cache, epoch) = (cache.clone(), epoch.clone());
            changes.on_change(move |change| {
                let drops = match change {
                    Change::User { user, .. } => {
                        cache.invalidate(user);
                        true
                    }
                    Change::Tenant { .. } | Change::All => {
                        cache.invalidate_all();
                        true
                    }
                    _ => false,
                };
                if drops {
                    epoch.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        Self {
            users,
            two_factor,
            cache,
            epoch,
        }
    }

    /// User `id` of `tenant` as they are now (`not_found` when there is none).
    pub async fn get(&self, tenant: TenantId, id: UserId) -> Result<Arc<Profile>> {
        if let Some(p) = self.cache.get(&id).filter(|p| p.user.tenant_id == tenant) {
            return Ok(p);
        }
        // Boxed: the reads are large futures, kept out of every hit's.
        Box::pin(self.load(tenant, id)).await
    }

    async fn load(&self, tenant: TenantId, id: UserId) -> Result<Arc<Profile>> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let user = self.users.get(tenant, id).await?;
        let recovery_codes_left = if user.has_two_factor() {
            Some(self.two_factor.status(&user).await?.recovery_codes_left)
        } else {
            None
        };
        let profile = Arc::new(Profile {
            user,
            recovery_codes_left,
        });
        if self.epoch.load(Ordering::SeqCst) == epoch {
            self.cache.insert(id, profile.clone());
        }
        Ok(profile)
    }
}
