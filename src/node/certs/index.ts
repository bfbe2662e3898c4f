export {
  type CertPair,
  CertsError,
  CertsErrorCode,
  DEFAULT_HOSTS,
  type DevCerts,
  type MakeDevCertsOptions,
  makeDevCerts,
} from "./dev-certs.js";
