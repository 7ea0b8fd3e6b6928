//! `/scope-sets`: the predefined and custom scope sets of the caller's tenant, and an
//! admin's changes to the custom ones.

use std::sync::Arc;

use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sigil_core::page::PageRequest;
use sigil_scope_registry::store::CustomSetInput;
use sigil_scope_registry::ScopeSetChanges;

use super::dto::{AccessDto, ScopeSetDto, ScopeSetList, SetKind};
use crate::api::caller::TenantCaller;
use crate::api::ApiTags;
use crate::problem::ApiResult;
use crate::state::AppState;

pub struct ScopeSetsApi(pub Arc<AppState>);

#[derive(Object)]
pub struct CreateScopeSetBody {
    /// 2-63 of a-z, 0-9, '-', '_'.
    #[oai(validator(min_length = 2, max_length = 63))]
    pub id: String,
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    #[oai(validator(max_length = 2000))]
    pub description: Option<String>,
    /// Method ids or globs (`platform.environment.*`).
    #[oai(validator(min_items = 1, max_items = 500))]
    pub methods: Vec<String>,
    pub access: Option<AccessDto>,
}

impl From<CreateScopeSetBody> for CustomSetInput {
    fn from(b: CreateScopeSetBody) -> Self {
        CustomSetInput {
            slug: b.id,
            name: b.name,
            description: b.description.unwrap_or_default(),
            entries: b.methods,
            access: b.access.map(Into::into),
        }
    }
}

#[derive(Object)]
pub struct UpdateScopeSetBody {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    #[oai(validator(max_length = 2000))]
    pub description: Option<String>,
    #[oai(validator(min_items = 1, max_items = 500))]
    pub methods: Option<Vec<String>>,
    pub access: Option<AccessDto>,
}

impl From<UpdateScopeSetBody> for ScopeSetChanges {
    fn from(b: UpdateScopeSetBody) -> Self {
        ScopeSetChanges {
            name: b.name,
            description: b.description,
            entries: b.methods,
            access: b.access.map(Into::into),
        }
    }
}

#[derive(ApiResponse)]
pub enum ScopeSetListResponse {
    #[oai(status = 200)]
    Ok(Json<ScopeSetList>),
}

#[derive(ApiResponse)]
pub enum ScopeSetResponse {
    #[oai(status = 200)]
    Ok(Json<ScopeSetDto>),
}

#[derive(ApiResponse)]
pub enum ScopeSetCreatedResponse {
    #[oai(status = 201)]
    Created(Json<ScopeSetDto>),
}

#[derive(ApiResponse)]
pub enum ScopeSetDeletedResponse {
    #[oai(status = 204)]
    Deleted,
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Registry")]
impl ScopeSetsApi {
    /// Predefined and custom scope sets.
    #[oai(path = "/scope-sets", method = "get", operation_id = "listScopeSets")]
    async fn list_scope_sets(
        &self,
        caller: TenantCaller,
        q: Query<Option<String>>,
        kind: Query<Option<SetKind>>,
        /// Matching items to skip.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000")))]
        offset: Query<Option<u64>>,
        /// Items per page (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> ApiResult<ScopeSetListResponse> {
        let page = PageRequest::new(offset.0, limit.0)?;
        let sets = self
            .0
            .scope_registry
            .scope_sets(caller.0.tenant_id, q.0.as_deref(), kind.0.map(Into::into))
            .await?;
        let items = sets
            .into_iter()
            .map(|s| ScopeSetDto::of(s, false))
            .collect();
        Ok(ScopeSetListResponse::Ok(Json(ScopeSetList::slice(
            items, page,
        ))))
    }

    /// Define a custom scope set (admin).
    #[oai(path = "/scope-sets", method = "post", operation_id = "createScopeSet")]
    async fn create_scope_set(
        &self,
        req: &Request,
        caller: TenantCaller,
        body: Json<CreateScopeSetBody>,
    ) -> ApiResult<ScopeSetCreatedResponse> {
        let p = caller.0;
        let by = self.0.actor(req, Some(&p));
        let set = self
            .0
            .scope_registry
            .create_scope_set(&by, p.tenant_id, body.0.into())
            .await?;
        Ok(ScopeSetCreatedResponse::Created(Json(ScopeSetDto::of(
            set, true,
        ))))
    }

    /// A scope set with its resolved methods.
    #[oai(
        path = "/scope-sets/:set_id",
        method = "get",
        operation_id = "getScopeSet"
    )]
    async fn get_scope_set(
        &self,
        caller: TenantCaller,
        set_id: Path<String>,
    ) -> ApiResult<ScopeSetResponse> {
        let set = self
            .0
            .scope_registry
            .scope_set(caller.0.tenant_id, &set_id.0)
            .await?;
        Ok(ScopeSetResponse::Ok(Json(ScopeSetDto::of(set, true))))
    }

    /// Change a custom scope set (admin); tokens using it change with it.
    #[oai(
        path = "/scope-sets/:set_id",
        method = "patch",
        operation_id = "updateScopeSet"
    )]
    async fn update_scope_set(
        &self,
        req: &Request,
        caller: TenantCaller,
        set_id: Path<String>,
        body: Json<UpdateScopeSetBody>,
    ) -> ApiResult<ScopeSetResponse> {
        let p = caller.0;
        let by = self.0.actor(req, Some(&p));
        let set = self
            .0
            .scope_registry
            .update_scope_set(&by, p.tenant_id, &set_id.0, body.0.into())
            .await?;
        Ok(ScopeSetResponse::Ok(Json(ScopeSetDto::of(set, true))))
    }

    /// Delete a custom scope set (admin); refused while tokens use it unless `force`.
    #[oai(
        path = "/scope-sets/:set_id",
        method = "delete",
        operation_id = "deleteScopeSet"
    )]
    async fn delete_scope_set(
        &self,
        req: &Request,
        caller: TenantCaller,
        set_id: Path<String>,
        force: Query<Option<bool>>,
    ) -> ApiResult<ScopeSetDeletedResponse> {
        let p = caller.0;
        let by = self.0.actor(req, Some(&p));
        self.0
            .scope_registry
            .delete_scope_set(&by, p.tenant_id, &set_id.0, force.0.unwrap_or(false))
            .await?;
        Ok(ScopeSetDeletedResponse::Deleted)
    }
}
