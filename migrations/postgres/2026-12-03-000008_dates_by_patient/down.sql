DROP INDEX search_dates_patient;
