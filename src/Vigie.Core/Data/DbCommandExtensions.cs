using System.Data.Common;

namespace Vigie.Core.Data;

/// <summary>Small ADO.NET helpers so modules need not repeat parameter plumbing.</summary>
public static class DbCommandExtensions
{
    public static DbCommand CreateCommand(this DbConnection connection, DbTransaction? transaction, string sql)
    {
        var command = connection.CreateCommand();
        command.Transaction = transaction.ForCommand();
        command.CommandText = sql;
        return command;
    }

    /// <summary>The provider's own transaction, which its commands require (a gated SQLite transaction wraps it).</summary>
    public static DbTransaction? ForCommand(this DbTransaction? transaction) => transaction is GatedTransaction gated ? gated.Inner : transaction;

    public static DbCommand With(this DbCommand command, string name, object? value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value ?? DBNull.Value;
        command.Parameters.Add(parameter);
        return command;
    }
}
