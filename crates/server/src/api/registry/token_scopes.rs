//! The token store's answers to the registry's questions about tokens (which tokens use a
//! set, which lists of their own may gain methods). The token crate sits above the
//! registry crate, so the server connects the two.

use async_trait::async_trait;
use sigil_core::{Result, TenantId};
use sigil_scope_registry::token_scopes::DatabaseTransaction;
use sigil_scope_registry::{CustomScopeToken, TokenScopes};
use sigil_token::TokenService;

pub struct TokenScopesOfTokens {
    tokens: TokenService,
}

impl TokenScopesOfTokens {
    pub fn new(tokens: TokenService) -> Self {
        Self { tokens }
    }
}

#[async_trait]
impl TokenScopes for TokenScopesOfTokens {
    async fn count_using_set(&self, tenant: TenantId, set: &str) -> Result<u64> {
        self.tokens.count_using_set(tenant, set).await
    }

    async fn count_using_sets(
        &self,
        txn: &DatabaseTransaction,
        tenant: Option<TenantId>,
        sets: &[String],
    ) -> Result<Vec<(TenantId, String, u64)>> {
        sigil_token::widening::count_using_sets(txn, tenant, sets).await
    }

    async fn with_custom_methods(
        &self,
        txn: &DatabaseTransaction,
        tenant: Option<TenantId>,
        new_ids: &[&str],
    ) -> Result<Vec<CustomScopeToken>> {
        let tokens =
            sigil_token::widening::tokens_with_custom_methods(txn, tenant, new_ids).await?;
        Ok(tokens
            .into_iter()
            .map(|t| CustomScopeToken {
                id: t.id,
                tenant: t.tenant,
                name: t.name,
                methods: t.methods,
                ceiling: t.ceiling,
            })
            .collect())
    }
}
