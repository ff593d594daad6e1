// The schema of both backends (migrations/sqlite and migrations/postgres hold the same tables).

diesel::table! {
    data_keys (scope) {
        scope -> Text,
        kek_id -> Text,
        wrapped_key -> Binary,
        created_at -> BigInt,
    }
}

diesel::table! {
    resource_versions (resource_type, id, version) {
        resource_type -> Text,
        id -> Text,
        version -> BigInt,
        patient -> Nullable<Text>,
        key_scope -> Text,
        security_labels -> Text,
        author_org -> Nullable<Text>,
        author_practitioner -> Nullable<Text>,
        last_updated -> BigInt,
        method -> Text,
        body -> Binary,
        service_event -> Nullable<Text>,
    }
}

diesel::table! {
    resource_heads (resource_type, id) {
        resource_type -> Text,
        id -> Text,
        version -> BigInt,
        patient -> Nullable<Text>,
        security_labels -> Text,
        author_org -> Nullable<Text>,
        author_practitioner -> Nullable<Text>,
        last_updated -> BigInt,
        service_event -> Nullable<Text>,
        listing -> Nullable<Binary>,
    }
}

diesel::table! {
    search_tokens (resource_type, param, token, id, version) {
        resource_type -> Text,
        id -> Text,
        param -> Text,
        token -> Text,
        patient -> Nullable<Text>,
        version -> BigInt,
        system_token -> Nullable<Text>,
    }
}

diesel::table! {
    search_dates (resource_type, param, range_start, range_end, id, version) {
        resource_type -> Text,
        id -> Text,
        param -> Text,
        range_start -> BigInt,
        range_end -> BigInt,
        patient -> Nullable<Text>,
        version -> BigInt,
    }
}

diesel::table! {
    consent_generations (patient) {
        patient -> Text,
        generation -> BigInt,
    }
}

diesel::table! {
    audit_entries (seq) {
        seq -> BigInt,
        recorded -> BigInt,
        patient -> Nullable<Text>,
        organisation -> Nullable<Text>,
        agent -> Nullable<Text>,
        action -> Text,
        event -> Binary,
        leaf -> Binary,
        prev -> Binary,
    }
}

diesel::table! {
    audit_checkpoints (size) {
        size -> BigInt,
        note -> Text,
        created -> BigInt,
    }
}

diesel::table! {
    audit_head (id) {
        id -> Integer,
        size -> BigInt,
        frontier -> Binary,
        last_leaf -> Binary,
        last_prev -> Binary,
        checkpoint_size -> BigInt,
        checkpoint_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(resource_heads, resource_versions, search_tokens, search_dates);

diesel::table! {
    reach_marks (principal, minute, patient) {
        principal -> Text,
        minute -> BigInt,
        patient -> Text,
        withheld -> Bool,
    }
}

diesel::table! {
    access_alerts (id) {
        id -> Text,
        principal -> Text,
        organisation -> Nullable<Text>,
        raised_at -> BigInt,
        until -> Nullable<BigInt>,
        patients -> BigInt,
        withheld -> BigInt,
        threshold -> Text,
        cleared_at -> Nullable<BigInt>,
        cleared_by -> Nullable<Text>,
        clear_reason -> Nullable<Text>,
    }
}

diesel::table! {
    key_versions (purpose, version) {
        purpose -> Text,
        version -> BigInt,
        key_id -> Text,
        created_at -> BigInt,
        rewrapped_at -> Nullable<BigInt>,
        retired_at -> Nullable<BigInt>,
        moved -> Nullable<BigInt>,
        to_move -> Nullable<BigInt>,
    }
}

diesel::table! {
    patient_aliases (patient, earlier) {
        patient -> Text,
        earlier -> Text,
    }
}
