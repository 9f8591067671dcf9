-- A revision's cases keyed by a small number instead of the revision's 71-character
-- text: repeated in every row, the text was a third of what a stored case took.
CREATE TABLE dataset_contents (
    content_id INTEGER PRIMARY KEY NOT NULL,
    revision   TEXT NOT NULL UNIQUE
);
INSERT INTO dataset_contents (revision) SELECT DISTINCT revision FROM dataset_cases ORDER BY revision;

CREATE TABLE dataset_cases_by_content (
    content_id INTEGER NOT NULL,
    case_index INTEGER NOT NULL,
    case_id    TEXT NOT NULL,
    case_json  TEXT NOT NULL,
    PRIMARY KEY (content_id, case_index)
) WITHOUT ROWID;
INSERT INTO dataset_cases_by_content (content_id, case_index, case_id, case_json)
    SELECT c.content_id, d.case_index, d.case_id, d.case_json
    FROM dataset_cases d JOIN dataset_contents c ON c.revision = d.revision
    ORDER BY c.content_id, d.case_index;
DROP TABLE dataset_cases;
ALTER TABLE dataset_cases_by_content RENAME TO dataset_cases;
