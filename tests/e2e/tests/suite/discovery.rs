use database::testing::Backend;
use e2e::spawn_suite;
use tokio_stream::StreamExt as _;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn every_service_reports_its_health_names(backend: Backend) {
    let suite = spawn_suite(backend).await;
    for (addr, name) in [
        (suite.gateway_addr, "notesuite.gateway.v1.GatewayService"),
        (suite.users_addr, "notesuite.users.v1.UsersService"),
        (suite.notes_addr, "notesuite.notes.v1.NotesService"),
    ] {
        let mut health = HealthClient::new(e2e::channel(addr).await);
        for service in ["", name, "liveness"] {
            let status = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .expect("check")
                .into_inner()
                .status();
            assert_eq!(status, ServingStatus::Serving, "{addr} {service:?}");
        }
    }
}

async fn listed_services(addr: std::net::SocketAddr) -> Vec<String> {
    let mut reflection = ServerReflectionClient::new(e2e::channel(addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses.next().await.expect("one answer").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let mut names: Vec<String> = list
        .service
        .into_iter()
        .map(|service| service.name)
        .collect();
    names.sort();
    names
}

async fn the_gateway_reflects_everything_reachable_through_it(backend: Backend) {
    let suite = spawn_suite(backend).await;
    assert_eq!(
        listed_services(suite.gateway_addr).await,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "notesuite.gateway.v1.GatewayService",
            "notesuite.notes.v1.NotesService",
            "notesuite.users.v1.UsersService",
        ]
    );
    assert_eq!(
        listed_services(suite.notes_addr).await,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "notesuite.notes.v1.NotesService",
        ]
    );
}

database::backend_tests!(
    every_service_reports_its_health_names,
    the_gateway_reflects_everything_reachable_through_it,
);
