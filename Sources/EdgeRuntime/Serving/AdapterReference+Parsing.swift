import AdapterCache

extension AdapterReference {
    /// Parses `NAME[@VERSION]` from a request field; a malformed reference is a 400 naming the field.
    /// The rule itself (store-safe names and versions) is AdapterCache's, so the socket API and the
    /// cache can never disagree on what a valid reference is.
    public init(parsing raw: String, param: String = "model") throws(APIError) {
        do {
            try self.init(raw)
        } catch {
            throw APIError.badRequest(error.description, param: param, code: "invalid_adapter_reference")
        }
    }
}
