//! The gRPC adapter: parse the request at the edge, call the service, convert the answer.
//! No rules live here.

use pagination::{PageSize, decode_token, encode_token};
use proto::users::users_service_server::UsersService;
use proto::users::{
    AccountDeletion, ConfirmAccountPurgedRequest, ConfirmAccountPurgedResponse,
    ListAccountDeletionsRequest, ListAccountDeletionsResponse,
};
use proto::users::{
    BatchGetUsersRequest, BatchGetUsersResponse, CreateUserRequest, CreateUserResponse,
    DeleteUserRequest, DeleteUserResponse, GetUserRequest, GetUserResponse, ListUsersRequest,
    ListUsersResponse, UpdateUserRequest, UpdateUserResponse, VerifyCredentialsRequest,
    VerifyCredentialsResponse,
};
use shell::Violations;
use token::Principal;
use tonic::{Request, Response, Status};

use crate::domain::{DisplayName, Email, Password, User, UserChanges, UserId, Version};
use crate::error::Error;
use crate::service::{MAX_BATCH_GET, NewUser, Users};
use crate::store::UserStore;

#[cfg(test)]
mod fuzz;

#[derive(Debug)]
pub struct UsersGrpc<S> {
    users: Users<S>,
    /// Keeps the revocation set fresh for as long as the service lives.
    _refresh: Option<tokio_util::task::AbortOnDropHandle<()>>,
}

impl<S> UsersGrpc<S> {
    pub fn new(users: Users<S>) -> Self {
        Self {
            users,
            _refresh: None,
        }
    }

    /// Stops `refresh` when the service is dropped.
    #[must_use]
    pub fn with_refresh(mut self, refresh: tokio_util::task::AbortOnDropHandle<()>) -> Self {
        self._refresh = Some(refresh);
        self
    }
}

fn caller<T>(request: &Request<T>) -> Result<Principal, Error> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or(Error::Unauthenticated)
}

fn invalid(violations: Violations) -> Error {
    Error::InvalidFields(violations.into_vec())
}

pub(crate) fn user_to_proto(user: &User) -> proto::users::User {
    proto::users::User {
        id: user.id.to_string(),
        email: user.email.as_str().to_owned(),
        display_name: user.display_name.as_str().to_owned(),
        create_time: Some(user.create_time.into()),
        update_time: Some(user.update_time.into()),
        etag: user.version.etag(),
    }
}

#[tonic::async_trait]
impl<S: UserStore> UsersService for UsersGrpc<S> {
    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<CreateUserResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let email = violations.check("email", Email::parse(&request.email));
        let display_name =
            violations.check("display_name", DisplayName::parse(&request.display_name));
        let password = violations.check("password", Password::parse(request.password));
        let (Some(email), Some(display_name), Some(password)) = (email, display_name, password)
        else {
            return Err(invalid(violations).into());
        };
        let user = self
            .users
            .create(
                &caller,
                NewUser {
                    email,
                    display_name,
                    password,
                },
            )
            .await?;
        Ok(Response::new(CreateUserResponse {
            user: Some(user_to_proto(&user)),
        }))
    }

    async fn get_user(
        &self,
        request: Request<GetUserRequest>,
    ) -> Result<Response<GetUserResponse>, Status> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        let Some(id) = violations.check("id", UserId::parse(&request.get_ref().id)) else {
            return Err(invalid(violations).into());
        };
        let user = self.users.get(&caller, id).await?;
        Ok(Response::new(GetUserResponse {
            user: Some(user_to_proto(&user)),
        }))
    }

    async fn batch_get_users(
        &self,
        request: Request<BatchGetUsersRequest>,
    ) -> Result<Response<BatchGetUsersResponse>, Status> {
        let caller = caller(&request)?;
        let raw_ids = &request.get_ref().ids;
        let mut violations = Violations::default();
        if raw_ids.is_empty() {
            violations.add("ids", "must name at least one user");
        }
        if raw_ids.len() > MAX_BATCH_GET {
            violations.add("ids", format!("must name at most {MAX_BATCH_GET} users"));
        }
        let ids: Vec<UserId> = raw_ids
            .iter()
            .enumerate()
            .filter_map(|(index, raw)| {
                violations.check(format!("ids[{index}]"), UserId::parse(raw))
            })
            .collect();
        if !violations.is_empty() {
            return Err(invalid(violations).into());
        }
        let users = self.users.batch_get(&caller, &ids).await?;
        Ok(Response::new(BatchGetUsersResponse {
            users: users.iter().map(user_to_proto).collect(),
        }))
    }

    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.get_ref();
        let mut violations = Violations::default();
        let page_size = violations.check("page_size", PageSize::parse(request.page_size));
        let after = violations
            .check("page_token", decode_token(&request.page_token, ""))
            .map(|key| key.map(|key| UserId::from_bytes(&key)));
        let (Some(page_size), Some(after)) = (page_size, after) else {
            return Err(invalid(violations).into());
        };
        let after = match after {
            None => None,
            Some(Some(id)) => Some(id),
            Some(None) => {
                violations.add("page_token", pagination::PageTokenError::Malformed);
                return Err(invalid(violations).into());
            }
        };
        // One extra row says whether another page exists without a COUNT.
        let mut users = self.users.list(&caller, after, page_size.get() + 1).await?;
        let next_page_token = if users.len() > page_size.get() as usize {
            users.truncate(page_size.get() as usize);
            users
                .last()
                .map(|last| encode_token(last.id.as_bytes(), ""))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListUsersResponse {
            users: users.iter().map(user_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_user(
        &self,
        request: Request<UpdateUserRequest>,
    ) -> Result<Response<UpdateUserResponse>, Status> {
        let caller = caller(&request)?;
        let UpdateUserRequest { user, update_mask } = request.into_inner();
        let mut violations = Violations::default();
        let Some(user) = user else {
            violations.add("user", "is required");
            return Err(invalid(violations).into());
        };
        let id = violations.check("user.id", UserId::parse(&user.id));
        let expected = violations.check(
            "user.etag",
            match user.etag.as_str() {
                "" => Err("is required: send the etag of the account you read"),
                etag => Version::parse_etag(etag),
            },
        );
        let paths = update_paths(update_mask, &user, &mut violations);
        let mut changes = UserChanges::default();
        for path in &paths {
            match path.as_str() {
                "email" => {
                    changes.email = violations.check("user.email", Email::parse(&user.email))
                }
                "display_name" => {
                    changes.display_name = violations
                        .check("user.display_name", DisplayName::parse(&user.display_name));
                }
                _ => {}
            }
        }
        let (Some(id), Some(expected), true) = (id, expected, violations.is_empty()) else {
            return Err(invalid(violations).into());
        };
        let user = self.users.update(&caller, id, expected, changes).await?;
        Ok(Response::new(UpdateUserResponse {
            user: Some(user_to_proto(&user)),
        }))
    }

    async fn delete_user(
        &self,
        request: Request<DeleteUserRequest>,
    ) -> Result<Response<DeleteUserResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.get_ref();
        let mut violations = Violations::default();
        let id = violations.check("id", UserId::parse(&request.id));
        let expected = violations.check(
            "etag",
            match request.etag.as_str() {
                "" => Ok(None),
                etag => Version::parse_etag(etag).map(Some),
            },
        );
        let (Some(id), Some(expected)) = (id, expected) else {
            return Err(invalid(violations).into());
        };
        self.users.delete(&caller, id, expected).await?;
        Ok(Response::new(DeleteUserResponse {}))
    }

    async fn list_account_deletions(
        &self,
        request: Request<ListAccountDeletionsRequest>,
    ) -> Result<Response<ListAccountDeletionsResponse>, Status> {
        let caller = caller(&request)?;
        let ListAccountDeletionsRequest {
            since,
            pending_only,
            page_size,
        } = request.into_inner();
        let mut violations = Violations::default();
        let since = match since {
            None => Some(None),
            Some(since) => violations
                .check(
                    "since",
                    std::time::SystemTime::try_from(since).map_err(|_| "must be a valid time"),
                )
                .map(Some),
        };
        let limit = match page_size {
            0 => Some(DEFAULT_DELETIONS_PAGE),
            size => violations.check(
                "page_size",
                u32::try_from(size).map_err(|_| "must not be negative"),
            ),
        };
        let (Some(since), Some(limit)) = (since, limit) else {
            return Err(invalid(violations).into());
        };
        let deletions = self
            .users
            .deletions(&caller, since, pending_only, limit)
            .await?;
        Ok(Response::new(ListAccountDeletionsResponse {
            deletions: deletions
                .into_iter()
                .map(|deletion| AccountDeletion {
                    user_id: deletion.user_id.to_string(),
                    delete_time: Some(deletion.delete_time.into()),
                    purge_time: deletion.purge_time.map(Into::into),
                })
                .collect(),
        }))
    }

    async fn confirm_account_purged(
        &self,
        request: Request<ConfirmAccountPurgedRequest>,
    ) -> Result<Response<ConfirmAccountPurgedResponse>, Status> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        let Some(id) = violations.check("user_id", UserId::parse(&request.get_ref().user_id))
        else {
            return Err(invalid(violations).into());
        };
        self.users.confirm_purged(&caller, id).await?;
        Ok(Response::new(ConfirmAccountPurgedResponse {}))
    }

    async fn verify_credentials(
        &self,
        request: Request<VerifyCredentialsRequest>,
    ) -> Result<Response<VerifyCredentialsResponse>, Status> {
        let caller = caller(&request)?;
        let VerifyCredentialsRequest { email, password } = request.into_inner();
        let mut violations = Violations::default();
        if email.trim().is_empty() {
            violations.add("email", "is required");
        }
        if password.is_empty() {
            violations.add("password", "is required");
        }
        if !violations.is_empty() {
            return Err(invalid(violations).into());
        }
        let user = self
            .users
            .verify_credentials(&caller, &email, password)
            .await?;
        Ok(Response::new(VerifyCredentialsResponse {
            user: Some(user_to_proto(&user)),
        }))
    }
}

/// Deletions a ListAccountDeletions without a `page_size` returns.
const DEFAULT_DELETIONS_PAGE: u32 = 100;

const UPDATABLE: &[&str] = &["email", "display_name"];
const OUTPUT_ONLY: &[&str] = &["id", "create_time", "update_time", "etag"];

/// The fields an update changes: the mask's paths, or (AIP-134) every non-empty updatable
/// field when the mask is empty.
fn update_paths(
    mask: Option<prost_types::FieldMask>,
    user: &proto::users::User,
    violations: &mut Violations,
) -> Vec<String> {
    let paths = mask.map(|mask| mask.paths).unwrap_or_default();
    if paths.is_empty() {
        let implied: Vec<String> = [("email", &user.email), ("display_name", &user.display_name)]
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(path, _)| path.to_owned())
            .collect();
        if implied.is_empty() {
            violations.add("update_mask", "names no field to change");
        }
        return implied;
    }
    for (index, path) in paths.iter().enumerate() {
        if OUTPUT_ONLY.contains(&path.as_str()) {
            violations.add(
                format!("update_mask.paths[{index}]"),
                format!("{path:?} cannot be changed"),
            );
        } else if !UPDATABLE.contains(&path.as_str()) {
            violations.add(
                format!("update_mask.paths[{index}]"),
                format!("{path:?} is not a field of User; updatable fields: email, display_name"),
            );
        }
    }
    paths
}
