-- One database per service (no service reads another's tables), created when the PostgreSQL volume is new.
CREATE DATABASE intake;
CREATE DATABASE eligibility;
CREATE DATABASE disbursement;
CREATE DATABASE referral;
