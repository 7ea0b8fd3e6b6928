//! `/methods`: search the API methods a caller sees.

use std::sync::Arc;

use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use sigil_core::page::PageRequest;
use sigil_scope_registry::MethodQuery;

use super::dto::{AccessDto, MethodDto, MethodList};
use super::tenant_of;
use crate::api::caller::AnyCaller;
use crate::api::ApiTags;
use crate::problem::ApiResult;
use crate::state::AppState;

pub struct MethodsApi(pub Arc<AppState>);

#[derive(ApiResponse)]
pub enum MethodListResponse {
    #[oai(status = 200)]
    Ok(Json<MethodList>),
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Registry")]
impl MethodsApi {
    /// Search API methods by id and description, filter by plugin and access.
    #[oai(path = "/methods", method = "get", operation_id = "listMethods")]
    async fn list_methods(
        &self,
        any: AnyCaller,
        q: Query<Option<String>>,
        plugin: Query<Option<String>>,
        access: Query<Option<AccessDto>>,
        /// Matching items to skip.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000")))]
        offset: Query<Option<u64>>,
        /// Items per page (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> ApiResult<MethodListResponse> {
        let page = PageRequest::new(offset.0, limit.0)?;
        let query = MethodQuery {
            text: q.0,
            plugin: plugin.0,
            access: access.0.map(Into::into),
        };
        let methods = self
            .0
            .scope_registry
            .find_methods(tenant_of(&any.0), &query);
        let items = methods.iter().map(MethodDto::from).collect();
        Ok(MethodListResponse::Ok(Json(MethodList::slice(items, page))))
    }
}
