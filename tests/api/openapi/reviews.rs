//! Human reviews and agreement validate against their schemas.

use super::*;

#[tokio::test]
async fn review_responses_match_the_schemas() {
    let h = Harness::sqlite().await;
    let (run_id, _) = h.run(example("arithmetic.json")).await;
    let reviews = "/runs/{run_id}/cases/{case_index}/reviews";
    let uri = format!("/runs/{run_id}/cases/0/reviews");
    for (reviewer, label) in [("ana", 1), ("bo", 1), ("cy", 0), ("ana", 0)] {
        let reply = h
            .send(
                Method::POST,
                &uri,
                Payload::Json(json!({"scores": {"exact": label}, "comment": "checked"})),
                &[("x-themis-reviewer", reviewer)],
            )
            .await;
        let review = h.check(Method::POST, reviews, &reply, StatusCode::CREATED);
        assert_eq!(review["reviewer"], reviewer);
    }
    let reply = h
        .post(&uri, json!({"scores": {"exact": 2, "nope": 1}}))
        .await;
    let error = h.check(
        Method::POST,
        reviews,
        &reply,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert_eq!(error["error"]["code"], "invalid_review");
    let history = h.check(Method::GET, reviews, &h.get(&uri).await, StatusCode::OK);
    assert_eq!(history["reviews"].as_array().unwrap().len(), 4);
    let reply = h.get(&format!("{uri}?limit=0")).await;
    h.check(Method::GET, reviews, &reply, StatusCode::BAD_REQUEST);
    let agreement = h.check(
        Method::GET,
        "/runs/{run_id}/agreement",
        &h.get(&format!("/runs/{run_id}/agreement")).await,
        StatusCode::OK,
    );
    assert_eq!(agreement["reviewed_cases"], 1);
    assert!(agreement["reviewable"].as_array().unwrap().len() >= 2);
    let case = h.check(
        Method::GET,
        "/runs/{run_id}/cases/{case_index}",
        &h.get(&format!("/runs/{run_id}/cases/0")).await,
        StatusCode::OK,
    );
    assert_eq!(case["reviews"].as_array().unwrap().len(), 3);
    let page = h.check(
        Method::GET,
        "/runs/{run_id}/results",
        &h.get(&format!("/runs/{run_id}/results?limit=1")).await,
        StatusCode::OK,
    );
    assert_eq!(page["results"][0]["reviews"].as_array().unwrap().len(), 3);
}
