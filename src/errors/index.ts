export { PodcryptError, isPodcryptError } from "./podcrypt-error.js";
export { ValidationError, isValidationError } from "./validation-error.js";
