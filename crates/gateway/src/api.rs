//! The gateway's own API: SignUp, Login and the GetProfile fan-out.

use std::time::{Duration, SystemTime};

use proto::gateway::gateway_service_server::GatewayService;
use proto::gateway::{
    GetProfileRequest, GetProfileResponse, LoginRequest, LoginResponse, SignUpRequest,
    SignUpResponse,
};
use proto::notes::ListNotesRequest;
use proto::notes::notes_service_client::NotesServiceClient;
use proto::users::users_service_client::UsersServiceClient;
use proto::users::{CreateUserRequest, GetUserRequest, VerifyCredentialsRequest};
use shell::Violations;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::{Request, Response, Status};

use crate::Backend;
use crate::deadline::{Deadline, GRPC_TIMEOUT};
use crate::error::Error;
use crate::forward::{NOTES_SERVICE as NOTES, USERS_SERVICE as USERS};
use crate::policy;

/// The gateway's own identity when it calls gateway-only methods.
pub(crate) const GATEWAY_SERVICE_NAME: &str = "gateway";
const DEFAULT_RECENT_NOTES: i32 = 5;
const MAX_RECENT_NOTES: i32 = 50;

#[derive(Debug, Clone)]
pub(crate) struct GatewayApi {
    pub(crate) users: UsersServiceClient<Backend>,
    pub(crate) notes: NotesServiceClient<Backend>,
    pub(crate) issuer: token::Issuer,
    pub(crate) limits: std::sync::Arc<crate::limits::RateLimits>,
    pub(crate) default_deadline: Duration,
}

impl GatewayApi {
    /// The call's deadline: the client's, or the default the policy table gives `path`.
    fn deadline(&self, metadata: &MetadataMap, path: &str) -> Deadline {
        let default = policy::lookup(path)
            .and_then(|policy| policy.default_deadline(self.default_deadline))
            .unwrap_or(self.default_deadline);
        Deadline::from_grpc_timeout(
            metadata
                .get(GRPC_TIMEOUT.as_str())
                .and_then(|value| value.to_str().ok()),
            default,
        )
    }

    /// A request to a backend, carrying `authorization` and the remaining budget.
    fn backend_request<T>(
        message: T,
        authorization: AsciiMetadataValue,
        deadline: Deadline,
    ) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(deadline.remaining());
        request
            .metadata_mut()
            .insert("authorization", authorization);
        request
    }

    fn service_authorization(&self) -> Result<AsciiMetadataValue, Error> {
        let issued = self.issuer.service_token(GATEWAY_SERVICE_NAME)?;
        bearer(&issued.token).ok_or(Error::Unauthenticated)
    }

    fn issue_user_token(&self, user_id: &str) -> Result<(String, SystemTime), Error> {
        let issued = self.issuer.user_token(user_id)?;
        Ok((issued.token, issued.expire_time))
    }
}

pub(crate) fn bearer(token: &str) -> Option<AsciiMetadataValue> {
    format!("Bearer {token}").parse().ok()
}

/// Runs `call` against the deadline; a backend's error becomes [`Error::Backend`].
async fn within<T>(
    deadline: Deadline,
    service: &'static str,
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<T, Error> {
    match tokio::time::timeout_at(deadline.instant(), call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(Error::Backend { service, status }),
        Err(_) => Err(Error::DeadlineExceeded),
    }
}

#[tonic::async_trait]
impl GatewayService for GatewayApi {
    async fn sign_up(
        &self,
        request: Request<SignUpRequest>,
    ) -> Result<Response<SignUpResponse>, Status> {
        let deadline = self.deadline(
            request.metadata(),
            "/notesuite.gateway.v1.GatewayService/SignUp",
        );
        self.limits
            .check_sign_up(request.remote_addr().map(|address| address.ip()))?;
        let SignUpRequest {
            email,
            display_name,
            password,
        } = request.into_inner();
        // The users service validates and answers with the same field names.
        let create = Self::backend_request(
            CreateUserRequest {
                email,
                display_name,
                password,
            },
            self.service_authorization()?,
            deadline,
        );
        let mut users = self.users.clone();
        let created = within(deadline, USERS, users.create_user(create)).await?;
        let user = created.user.ok_or(Error::Backend {
            service: USERS,
            status: Status::internal("CreateUser answered without a user"),
        })?;
        let (access_token, expire_time) = self.issue_user_token(&user.id)?;
        Ok(Response::new(SignUpResponse {
            user: Some(user),
            access_token,
            expire_time: Some(expire_time.into()),
        }))
    }

    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let deadline = self.deadline(
            request.metadata(),
            "/notesuite.gateway.v1.GatewayService/Login",
        );
        let address = request.remote_addr().map(|address| address.ip());
        let LoginRequest { email, password } = request.into_inner();
        self.limits.check_login(address, &email)?;
        let verify = Self::backend_request(
            VerifyCredentialsRequest { email, password },
            self.service_authorization()?,
            deadline,
        );
        let mut users = self.users.clone();
        let verified = within(deadline, USERS, users.verify_credentials(verify)).await?;
        let user = verified.user.ok_or(Error::Backend {
            service: USERS,
            status: Status::internal("VerifyCredentials answered without a user"),
        })?;
        let (access_token, expire_time) = self.issue_user_token(&user.id)?;
        Ok(Response::new(LoginResponse {
            user: Some(user),
            access_token,
            expire_time: Some(expire_time.into()),
        }))
    }

    async fn get_profile(
        &self,
        request: Request<GetProfileRequest>,
    ) -> Result<Response<GetProfileResponse>, Status> {
        let deadline = self.deadline(
            request.metadata(),
            "/notesuite.gateway.v1.GatewayService/GetProfile",
        );
        let user_id = match request.extensions().get::<token::Principal>() {
            Some(token::Principal::User { user_id }) => user_id.clone(),
            Some(token::Principal::Service { .. }) => {
                return Err(Error::UserCredentialRequired.into());
            }
            None => return Err(Error::Unauthenticated.into()),
        };
        self.limits
            .check_user(crate::policy::RateClass::Read, &user_id)?;
        // The caller's own token goes to both backends: they check it themselves.
        let authorization = request
            .metadata()
            .get("authorization")
            .cloned()
            .ok_or(Error::Unauthenticated)?;
        let limit = request.get_ref().recent_notes_limit;
        let mut violations = Violations::default();
        let limit = violations.check(
            "recent_notes_limit",
            match limit {
                0 => Ok(DEFAULT_RECENT_NOTES),
                1..=MAX_RECENT_NOTES => Ok(limit),
                _ => Err(format!("must be between 0 and {MAX_RECENT_NOTES}")),
            },
        );
        let Some(limit) = limit else {
            return Err(Error::InvalidFields(violations.into_vec()).into());
        };

        let get_user = Self::backend_request(
            GetUserRequest { id: user_id },
            authorization.clone(),
            deadline,
        );
        let list_notes = Self::backend_request(
            ListNotesRequest {
                page_size: limit,
                ..Default::default()
            },
            authorization,
            deadline,
        );
        let (mut users, mut notes) = (self.users.clone(), self.notes.clone());
        let (user, notes) = tokio::try_join!(
            within(deadline, USERS, users.get_user(get_user)),
            within(deadline, NOTES, notes.list_notes(list_notes)),
        )?;
        Ok(Response::new(GetProfileResponse {
            user: user.user,
            note_count: notes.total_size,
            recent_notes: notes.notes,
        }))
    }
}
