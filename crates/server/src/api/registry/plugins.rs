//! `/plugins`: list, register or upgrade, get and remove plugins.

use std::sync::Arc;

use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::Any;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sigil_core::page::PageRequest;
use sigil_scope_registry::Registration;

use super::dto::{DeletedPluginDto, ManifestDto, PluginDto, PluginList, RegisteredPluginDto};
use super::{actor, tenant_of};
use crate::api::caller::AnyCaller;
use crate::api::ApiTags;
use crate::problem::ApiResult;
use crate::state::AppState;

pub struct PluginsApi(pub Arc<AppState>);

/// Register a plugin from a manifest, or from an OpenAPI 3.x document.
#[derive(Object)]
pub struct RegisterPluginBody {
    pub manifest: Option<ManifestDto>,
    /// An OpenAPI 3.x document (JSON): operationId → method, GET/HEAD → read, other verbs
    /// → change, `x-sigil-access` overrides, tags become predefined sets.
    pub openapi: Option<Any<serde_json::Value>>,
    /// Plugin id when registering from OpenAPI.
    pub id: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
    /// Operator only: register for every tenant (default true for the operator, false
    /// for a tenant admin, whose plugins are private to the tenant).
    pub global: Option<bool>,
}

impl From<RegisterPluginBody> for Registration {
    fn from(b: RegisterPluginBody) -> Self {
        Registration {
            manifest: b.manifest.map(Into::into),
            openapi: b.openapi.map(|doc| doc.0),
            id: b.id,
            name: b.name,
            version: b.version,
            global: b.global,
        }
    }
}

#[derive(ApiResponse)]
pub enum PluginListResponse {
    #[oai(status = 200)]
    Ok(Json<PluginList>),
}

#[derive(ApiResponse)]
pub enum RegisterResponse {
    /// Registered.
    #[oai(status = 201)]
    Created(Json<RegisteredPluginDto>),
    /// Updated to the new version.
    #[oai(status = 200)]
    Updated(Json<RegisteredPluginDto>),
}

#[derive(ApiResponse)]
pub enum PluginResponse {
    #[oai(status = 200)]
    Ok(Json<PluginDto>),
}

#[derive(ApiResponse)]
pub enum DeletePluginResponse {
    #[oai(status = 200)]
    Ok(Json<DeletedPluginDto>),
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Registry")]
impl PluginsApi {
    /// Plugins you can see: global ones and your tenant's own.
    #[oai(path = "/plugins", method = "get", operation_id = "listPlugins")]
    async fn list_plugins(
        &self,
        any: AnyCaller,
        /// Matching items to skip.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000")))]
        offset: Query<Option<u64>>,
        /// Items per page (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> ApiResult<PluginListResponse> {
        let page = PageRequest::new(offset.0, limit.0)?;
        let plugins = self.0.scope_registry.visible_plugins(tenant_of(&any.0));
        let items = plugins.into_iter().map(PluginDto::from).collect();
        Ok(PluginListResponse::Ok(Json(PluginList::slice(items, page))))
    }

    /// Register or upgrade a plugin (operator: global; tenant admin: private to the tenant).
    /// The plugin owns the namespace of its id: every method id starts with `<id>.`
    /// (`method_outside_namespace`), and the built-in plugin's namespaces (`tokens`,
    /// `users`, ...) are no plugin ids (`reserved_plugin_id`). The answer lists the tokens
    /// and scope sets that grant more after the change (`widened`); so does the audit log.
    /// Send either `manifest`, or `openapi` (an OpenAPI 3.x document) with `id`.
    #[oai(path = "/plugins", method = "post", operation_id = "registerPlugin")]
    async fn register_plugin(
        &self,
        req: &Request,
        any: AnyCaller,
        body: Json<RegisterPluginBody>,
    ) -> ApiResult<RegisterResponse> {
        let by = actor(&self.0, req, &any.0);
        let registered = self
            .0
            .scope_registry
            .register_plugin(&by, body.0.into())
            .await?;
        let created = registered.created;
        let body = Json(RegisteredPluginDto::from(registered));
        Ok(if created {
            RegisterResponse::Created(body)
        } else {
            RegisterResponse::Updated(body)
        })
    }

    /// A plugin with its methods and predefined sets.
    #[oai(
        path = "/plugins/:plugin_id",
        method = "get",
        operation_id = "getPlugin"
    )]
    async fn get_plugin(
        &self,
        any: AnyCaller,
        plugin_id: Path<String>,
    ) -> ApiResult<PluginResponse> {
        let plugin = self
            .0
            .scope_registry
            .plugin(tenant_of(&any.0), &plugin_id.0)
            .await?;
        Ok(PluginResponse::Ok(Json(plugin.into())))
    }

    /// Remove a plugin; tokens whose scope named its methods simply lose them.
    #[oai(
        path = "/plugins/:plugin_id",
        method = "delete",
        operation_id = "deletePlugin"
    )]
    async fn delete_plugin(
        &self,
        req: &Request,
        any: AnyCaller,
        plugin_id: Path<String>,
    ) -> ApiResult<DeletePluginResponse> {
        let by = actor(&self.0, req, &any.0);
        let removed = self
            .0
            .scope_registry
            .remove_plugin(&by, &plugin_id.0)
            .await?;
        Ok(DeletePluginResponse::Ok(Json(DeletedPluginDto {
            id: removed.id,
            note: format!(
                "{} methods removed; tokens whose scope named them no longer grant them",
                removed.removed_methods.len()
            ),
            removed_methods: removed.removed_methods,
        })))
    }
}
