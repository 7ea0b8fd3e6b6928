use std::sync::Arc;

use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sigil_core::page::PageRequest;
use sigil_core::UserId;
use sigil_user::{NewUser, UserFilter, UserPatch};
use uuid::Uuid;

use super::caller::TenantCaller;
use super::dto::{RoleDto, UserDto, UserKindDto};
use super::ApiTags;
use crate::problem::ApiResult;
use crate::state::AppState;

pub struct UsersApi(pub Arc<AppState>);

#[derive(Object)]
pub struct CreateUserBody {
    #[oai(validator(min_length = 1, max_length = 64))]
    pub username: String,
    #[oai(validator(min_length = 1, max_length = 200))]
    pub display_name: Option<String>,
    /// An address (`local@domain.tld`, no spaces); empty clears it.
    #[oai(validator(max_length = 254))]
    pub email: Option<String>,
    /// `person` (default) or `api` (a service account for unattended scripts).
    pub kind: Option<UserKindDto>,
    /// Default `member`.
    pub role: Option<RoleDto>,
    /// Default true.
    pub api_access: Option<bool>,
    /// Optional: a user without a password cannot log in (e.g. an api user that only
    /// holds application tokens).
    #[oai(validator(max_length = 256))]
    pub password: Option<String>,
}

#[derive(Object)]
pub struct UpdateUserBody {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub display_name: Option<String>,
    /// An address (`local@domain.tld`, no spaces); empty clears it.
    #[oai(validator(max_length = 254))]
    pub email: Option<String>,
    pub role: Option<RoleDto>,
    pub api_access: Option<bool>,
    pub active: Option<bool>,
    /// Sets a new password (ends the user's login sessions).
    #[oai(validator(max_length = 256))]
    pub password: Option<String>,
    /// Rate limits shared by all of the user's tokens (an empty list removes them).
    #[oai(validator(max_items = 8))]
    pub rate_limits: Option<Vec<super::limits::RateLimitDto>>,
}

#[derive(ApiResponse)]
pub enum CreateUserResponse {
    #[oai(status = 201)]
    Created(Json<UserDto>),
}

#[derive(ApiResponse)]
pub enum UserResponse {
    #[oai(status = 200)]
    Ok(Json<UserDto>),
}

super::dto::list_envelope!(
    /// One page of users.
    UserList,
    UserDto
);

#[derive(ApiResponse)]
pub enum UserListResponse {
    #[oai(status = 200)]
    Ok(Json<UserList>),
}

#[derive(ApiResponse)]
pub enum DeleteUserResponse {
    /// Deleted, with their tokens.
    #[oai(status = 204)]
    Deleted,
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Users")]
impl UsersApi {
    /// Create a user (admin).
    #[oai(path = "/users", method = "post", operation_id = "createUser")]
    async fn create_user(
        &self,
        req: &Request,
        caller: TenantCaller,
        body: Json<CreateUserBody>,
    ) -> ApiResult<CreateUserResponse> {
        let p = caller.0;
        let b = body.0;
        let actor = self.0.actor(req, Some(&p));
        let user = self
            .0
            .users
            .create(
                &actor,
                p.tenant_id,
                NewUser {
                    username: b.username,
                    display_name: b.display_name,
                    email: b.email.filter(|e| !e.is_empty()),
                    kind: b.kind.unwrap_or(UserKindDto::Person).into(),
                    role: b.role.unwrap_or(RoleDto::Member).into(),
                    api_access: b.api_access.unwrap_or(true),
                    password: b.password,
                },
            )
            .await?;
        Ok(CreateUserResponse::Created(Json(UserDto::from(&user))))
    }

    /// List the tenant's users with search and filters (admin, token manager).
    #[oai(path = "/users", method = "get", operation_id = "listUsers")]
    #[allow(clippy::too_many_arguments)]
    async fn list_users(
        &self,
        caller: TenantCaller,
        /// Text search over username, display name and email.
        q: Query<Option<String>>,
        role: Query<Option<RoleDto>>,
        kind: Query<Option<UserKindDto>>,
        active: Query<Option<bool>>,
        /// Only users with (true) or without (false) two-factor sign-in.
        two_factor: Query<Option<bool>>,
        /// Matching items to skip.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000")))]
        offset: Query<Option<u64>>,
        /// Items per page (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> ApiResult<UserListResponse> {
        let p = caller.0;
        let page = PageRequest::new(offset.0, limit.0)?;
        let filter = UserFilter {
            q: q.0,
            role: role.0.map(Into::into),
            kind: kind.0.map(Into::into),
            active: active.0,
            two_factor: two_factor.0,
        };
        let result = self.0.users.list(p.tenant_id, filter, page).await?;
        Ok(UserListResponse::Ok(Json(UserList {
            items: result.items.iter().map(UserDto::from).collect(),
            total: result.total,
            offset: page.offset,
            limit: page.limit,
        })))
    }

    /// Get a user (admin, token manager).
    #[oai(path = "/users/:user_id", method = "get", operation_id = "getUser")]
    async fn get_user(&self, caller: TenantCaller, user_id: Path<Uuid>) -> ApiResult<UserResponse> {
        let p = caller.0;
        let user = self.0.users.get(p.tenant_id, UserId(user_id.0)).await?;
        Ok(UserResponse::Ok(Json(UserDto::from(&user))))
    }

    /// Change a user's contact, role, permission, state or password (admin).
    #[oai(
        path = "/users/:user_id",
        method = "patch",
        operation_id = "updateUser"
    )]
    async fn update_user(
        &self,
        req: &Request,
        caller: TenantCaller,
        user_id: Path<Uuid>,
        body: Json<UpdateUserBody>,
    ) -> ApiResult<UserResponse> {
        let p = caller.0;
        let id = UserId(user_id.0);
        let b = body.0;
        let patch = UserPatch {
            display_name: b.display_name,
            email: b.email.map(|e| Some(e).filter(|e| !e.is_empty())),
            role: b.role.map(Into::into),
            api_access: b.api_access,
            active: b.active,
            password: b.password,
            rate_limits: b.rate_limits.map(super::limits::rate_limits_from),
        };
        let actor = self.0.actor(req, Some(&p));
        let user = self.0.users.update(&actor, p.tenant_id, id, patch).await?;
        Ok(UserResponse::Ok(Json(UserDto::from(&user))))
    }

    /// Deactivate a user: their logins and tokens stop working at once (admin).
    #[oai(
        path = "/users/:user_id/deactivate",
        method = "post",
        operation_id = "deactivateUser"
    )]
    async fn deactivate_user(
        &self,
        req: &Request,
        caller: TenantCaller,
        user_id: Path<Uuid>,
    ) -> ApiResult<UserResponse> {
        let p = caller.0;
        let actor = self.0.actor(req, Some(&p));
        let user = self
            .0
            .users
            .deactivate(&actor, p.tenant_id, UserId(user_id.0))
            .await?;
        Ok(UserResponse::Ok(Json(UserDto::from(&user))))
    }

    /// Delete a user and their tokens (admin).
    #[oai(
        path = "/users/:user_id",
        method = "delete",
        operation_id = "deleteUser"
    )]
    async fn delete_user(
        &self,
        req: &Request,
        caller: TenantCaller,
        user_id: Path<Uuid>,
    ) -> ApiResult<DeleteUserResponse> {
        let p = caller.0;
        let actor = self.0.actor(req, Some(&p));
        // Their tokens go with them, in the same transaction.
        self.0
            .users
            .delete(&actor, p.tenant_id, UserId(user_id.0))
            .await?;
        Ok(DeleteUserResponse::Deleted)
    }
}
