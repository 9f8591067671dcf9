//! The store contract for the OpenAI Evals API's objects, over every store: objects are
//! read back as written (a file's content only when asked for), listed by kind and
//! parent in insertion order both ways with an `after` cursor and a status filter,
//! updated in place, and deleted with their children.

use std::sync::Arc;

use serde_json::json;
use themis::model::{EvalKind, EvalObject, EvalObjectQuery, ListOrder};
use themis::store::Store;

fn object(kind: EvalKind, parent: Option<&str>, status: Option<&str>, n: i64) -> EvalObject {
    let id = kind.new_id();
    EvalObject {
        kind,
        body: json!({"id": id, "n": n, "name": "ünïcode \"quoted\""}),
        id,
        parent_id: parent.map(str::to_owned),
        status: status.map(str::to_owned),
        created_at: 1_700_000_000 + n,
        content: (kind == EvalKind::File).then(|| format!("{{\"item\": {{\"n\": {n}}}}}\n")),
    }
}

fn query(kind: EvalKind, parent: Option<&str>) -> EvalObjectQuery {
    EvalObjectQuery {
        kind,
        parent_id: parent.map(str::to_owned),
        status: None,
        after: None,
        order: ListOrder::Asc,
        limit: 100,
    }
}

fn ids(objects: &[EvalObject]) -> Vec<String> {
    objects.iter().map(|o| o.id.clone()).collect()
}

async fn objects_are_listed_paged_filtered_and_deleted_with_children(store: Arc<dyn Store>) {
    let eval = object(EvalKind::Eval, None, None, 0);
    let other = object(EvalKind::Eval, None, None, 1);
    store.insert_eval_object(&eval).await.unwrap();
    store.insert_eval_object(&other).await.unwrap();
    let mut runs = Vec::new();
    for n in 0..5 {
        let status = if n % 2 == 0 { "completed" } else { "queued" };
        let run = object(EvalKind::Run, Some(&eval.id), Some(status), n);
        store.insert_eval_object(&run).await.unwrap();
        runs.push(run);
    }
    let stranger = object(EvalKind::Run, Some(&other.id), Some("completed"), 9);
    store.insert_eval_object(&stranger).await.unwrap();

    // Read back as written.
    let read = store
        .get_eval_object(EvalKind::Run, &runs[1].id, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, runs[1]);
    assert!(
        store
            .get_eval_object(EvalKind::Eval, &runs[1].id, false)
            .await
            .unwrap()
            .is_none(),
        "ids are looked up within their kind"
    );

    // Pages in both orders, after a cursor, filtered by status.
    let all = store
        .list_eval_objects(&query(EvalKind::Run, Some(&eval.id)))
        .await
        .unwrap();
    assert_eq!(ids(&all), ids(&runs));
    let mut page = query(EvalKind::Run, Some(&eval.id));
    page.after = Some(runs[1].id.clone());
    page.limit = 2;
    assert_eq!(
        ids(&store.list_eval_objects(&page).await.unwrap()),
        ids(&runs[2..4])
    );
    page.order = ListOrder::Desc;
    assert_eq!(
        ids(&store.list_eval_objects(&page).await.unwrap()),
        vec![runs[0].id.clone()]
    );
    page.after = None;
    page.status = Some("completed".into());
    page.limit = 10;
    assert_eq!(
        ids(&store.list_eval_objects(&page).await.unwrap()),
        vec![runs[4].id.clone(), runs[2].id.clone(), runs[0].id.clone()]
    );
    let evals = store
        .list_eval_objects(&query(EvalKind::Eval, None))
        .await
        .unwrap();
    assert_eq!(ids(&evals), vec![eval.id.clone(), other.id.clone()]);

    // Updated in place.
    let body = json!({"n": 1, "status": "in_progress"});
    assert!(
        store
            .update_eval_object(EvalKind::Run, &runs[1].id, Some("in_progress"), &body)
            .await
            .unwrap()
    );
    let read = store
        .get_eval_object(EvalKind::Run, &runs[1].id, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (read.status.as_deref(), &read.body),
        (Some("in_progress"), &body)
    );
    assert!(
        !store
            .update_eval_object(EvalKind::Run, "evalrun_missing", None, &body)
            .await
            .unwrap()
    );

    // Deleting the eval deletes its runs, not another eval's.
    assert!(
        store
            .delete_eval_object(EvalKind::Eval, &eval.id)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_eval_object(EvalKind::Eval, &eval.id)
            .await
            .unwrap()
    );
    assert!(
        store
            .list_eval_objects(&query(EvalKind::Run, Some(&eval.id)))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(&store
            .list_eval_objects(&query(EvalKind::Run, Some(&other.id)))
            .await
            .unwrap()),
        vec![stranger.id.clone()]
    );
}

async fn file_content_is_read_only_when_asked_for(store: Arc<dyn Store>) {
    let file = object(EvalKind::File, None, None, 3);
    store.insert_eval_object(&file).await.unwrap();
    let with = store
        .get_eval_object(EvalKind::File, &file.id, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(with.content, file.content);
    let without = store
        .get_eval_object(EvalKind::File, &file.id, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(without.content, None);
    let listed = store
        .list_eval_objects(&query(EvalKind::File, None))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].content, None);
}

contract!(
    objects_are_listed_paged_filtered_and_deleted_with_children,
    file_content_is_read_only_when_asked_for,
);
