DROP INDEX search_tokens_patient;
